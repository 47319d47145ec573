"""Evaluation at native resolution, the trivial predictors, and saving predictions for re-scoring."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from PIL import Image

from mtbench.data.base import DatasetInfo
from mtbench.distributed import all_reduce_sum, broadcast_object, context
from mtbench.metrics.base import Evaluator
from mtbench.task import Task


def native_crop(x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    """Undo padding: ``meta['size']`` is the native (h, w), ``meta.get('offset')`` its top-left."""
    h, w = meta["size"]
    top, left = meta.get("offset", (0, 0))
    return x[..., top:top + h, left:left + w]


def _update(evaluator: Evaluator, pred: torch.Tensor, target: torch.Tensor, metas: list[dict],
            ids: frozenset[str] | None = None) -> None:
    """Score each image at its native size; whole batch at once when nothing was padded.

    ``ids`` restricts scoring to a published subset (e.g. SEISM's boundary test lists)."""
    if ids is not None:
        keep = [i for i, m in enumerate(metas) if m["id"] in ids]
        if len(keep) < len(metas):
            for i in keep:
                _update(evaluator, pred[i:i + 1], target[i:i + 1], [metas[i]])
            return
    if all(tuple(m["size"]) == tuple(target.shape[-2:]) and tuple(m.get("offset", (0, 0))) == (0, 0) for m in metas):
        evaluator.update(pred, target)
        return
    for i, m in enumerate(metas):
        evaluator.update(native_crop(pred[i:i + 1], m), native_crop(target[i:i + 1], m))


def _save_pngs(pred_dir: Path, pred: torch.Tensor, metas: list[dict]) -> None:
    """8-bit PNGs truncated as the reference pipelines write them, ``(p * 255).astype(np.uint8)``
    in float32 (ATRC/InvPT/MQTransformer/MTI-Net); rounding would move boundary AP by ~1 point."""
    pred_dir.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(metas):
        p = native_crop(pred[i], m).float().clamp(0, 1).cpu().numpy()
        Image.fromarray((p * np.float32(255)).astype(np.uint8)).save(pred_dir / f"{m['id']}.png")


def evaluate(
    predict: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    batches: Iterable[dict[str, Any]],
    tasks: dict[str, Task],
    info: DatasetInfo,
    eval_cfg: dict[str, Any],
    device: torch.device,
    pred_dir: Path | None = None,
    on_batch: Callable[[], None] | None = None,
    eval_ids: dict[str, frozenset[str]] | None = None,
    qualitative: tuple[Path, frozenset[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics per task, plus the task loss on the val split under the key ``loss``.

    ``predict`` maps an image batch to logits per task, so the same loop scores a network and a
    trivial constant predictor. ``qualitative`` = (directory, ids): the images whose input, targets and
    predictions are kept for the report (``mtbench.qualitative``).
    """
    extras = EvalExtras(pred_dir, on_batch, eval_ids, qualitative)
    return summarise(accumulate(predict, batches, tasks, info, eval_cfg, device, extras), tasks, device)


@dataclass(frozen=True)
class EvalExtras:
    """What an evaluation does beside scoring (the optional arguments of ``evaluate``): its timing benchmark
    (``benchmarks/gpu_check.py``) runs the loop without any of them."""

    pred_dir: Path | None = None
    on_batch: Callable[[], None] | None = None
    eval_ids: dict[str, frozenset[str]] | None = None
    qualitative: tuple[Path, frozenset[str]] | None = None


@dataclass
class EvalState:
    """What the evaluation loop leaves on the device: each task's evaluator and its val-loss sum."""

    evaluators: dict[str, Evaluator]
    loss_sum: dict[str, torch.Tensor]
    n_batches: int


def accumulate(predict: Callable[[torch.Tensor], dict[str, torch.Tensor]], batches: Iterable[dict[str, Any]],
               tasks: dict[str, Task], info: DatasetInfo, eval_cfg: dict[str, Any], device: torch.device,
               extras: EvalExtras = EvalExtras()) -> EvalState:
    """The per-batch part of ``evaluate``: no host sync on the device path (``benchmarks/gpu_check.py`` times
    it as a method's evaluation throughput)."""
    from mtbench import qualitative as qual

    pred_dir, on_batch, eval_ids, qualitative = extras.pred_dir, extras.on_batch, extras.eval_ids, extras.qualitative
    evaluators = {t: task.evaluator(info, eval_cfg) for t, task in tasks.items()}
    loss_sum = {t: torch.zeros((), dtype=torch.float64, device=device) for t in tasks}
    n_batches = 0
    for batch in batches:
        images = batch["image"].to(device, non_blocking=True)
        logits = predict(images)
        preds = {}
        for t, task in tasks.items():
            target = batch[t].to(device, non_blocking=True)
            if t in logits:
                loss_sum[t] += task.loss(logits[t], target).double()
                pred = task.postprocess(logits[t])
            else:  # a trivial predictor gives predictions, not logits
                pred = task.prior_prediction(batch[f"__prior_{t}"], target)
            preds[t] = pred
            _update(evaluators[t], pred, target, batch["meta"], (eval_ids or {}).get(t))
            if pred_dir is not None and task.saves_predictions:
                _save_pngs(pred_dir / t, pred, batch["meta"])
        if qualitative is not None:
            qual.save(qualitative[0], batch, preds, tasks, qualitative[1], native_crop)
        n_batches += 1
        if on_batch:
            on_batch()
    return EvalState(evaluators, loss_sum, n_batches)


def summarise(state: EvalState, tasks: dict[str, Task], device: torch.device) -> dict[str, dict[str, float]]:
    """Pool the state of every process and compute the metrics (the only host syncs of an evaluation)."""
    evaluators, loss_sum, n_batches = state.evaluators, state.loss_sum, state.n_batches
    # Data parallel: pool the sums of every rank, compute once on rank 0, share the numbers.
    for ev in evaluators.values():
        ev.sync(device)
    counts = all_reduce_sum(torch.tensor([float(n_batches)], dtype=torch.float64, device=device))
    for t in tasks:
        all_reduce_sum(loss_sum[t])
    results: dict[str, dict[str, float]] = {}
    if context().is_main:
        for t, ev in evaluators.items():
            results[t] = ev.compute()
            if counts.item():  # the val loss is a proxy: the mean of per-batch losses
                results[t]["loss"] = float(loss_sum[t] / counts.item())
    return broadcast_object(results)


def fit_priors(batches: Iterable[dict[str, Any]], tasks: dict[str, Task], info: DatasetInfo) -> dict[str, torch.Tensor]:
    """Sufficient statistics of the training targets for each task's constant predictor."""
    stats: dict[str, torch.Tensor] = {}
    for batch in batches:
        for t, task in tasks.items():
            s = task.prior_stats(batch[t], info)
            stats[t] = s if t not in stats else stats[t] + s
    return {t: all_reduce_sum(s) for t, s in stats.items()}  # each rank saw its shard


def evaluate_trivial(priors: dict[str, torch.Tensor], batches: Iterable[dict[str, Any]], tasks: dict[str, Task],
                     info: DatasetInfo, eval_cfg: dict[str, Any], device: torch.device,
                     eval_ids: dict[str, frozenset[str]] | None = None) -> dict[str, dict[str, float]]:
    """Scores of the constant predictors (majority class, mean depth, mean normal, prior rates)."""
    def with_priors(batches):
        for batch in batches:
            yield {**batch, **{f"__prior_{t}": priors[t] for t in tasks}}

    results = evaluate(lambda images: {}, with_priors(batches), tasks, info, eval_cfg, device, eval_ids=eval_ids)
    for r in results.values():
        r.pop("loss", None)
    return results


def subset_ids(dataset: Any, tasks: dict[str, Task]) -> dict[str, frozenset[str]]:
    """Per-task id subsets a dataset declares as ``<task>_eval_ids`` (None = score every image)."""
    out = {}
    for t in tasks:
        ids = getattr(dataset, f"{t}_eval_ids", None)
        if ids is not None:
            out[t] = frozenset(ids)
    return out


def autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
