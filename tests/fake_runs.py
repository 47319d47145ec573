"""Fake-but-valid results directories for the report's tests and speed benchmark: run records in the engine's
shape, per-iteration training logs and qualitative images, written in milliseconds (no training)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from mtbench import prediction_io
from mtbench.qualitative import DIR_NAME, IMAGE_NAME
from mtbench.records import write_record

PRIMARY = {"semseg": ("mIoU", True, 40.0), "depth": ("rmse", False, 0.6), "normals": ("mean", False, 25.0),
           "edge": ("odsF", True, 60.0)}
KIND = {"semseg": "labels", "depth": "depth", "normals": "normals", "edge": "probability"}


def _arrays(task: str, rng: np.random.Generator, h: int, w: int):
    if task == "semseg":
        return rng.integers(0, 10, (h, w))
    if task == "depth":
        return rng.uniform(0.5, 5.0, (h, w)).astype(np.float32)
    if task == "normals":
        n = rng.normal(size=(3, h, w)).astype(np.float32)
        return n / np.linalg.norm(n, axis=0, keepdims=True)
    return rng.uniform(0, 1, (h, w)).astype(np.float32)


def _target(task: str, rng: np.random.Generator, h: int, w: int):
    if task == "edge":
        return (rng.uniform(size=(h, w)) > 0.8).astype(np.uint8)
    return _arrays(task, rng, h, w)


def write_run(root: Path, method: str, tasks: tuple[str, ...], seed: int, *, key: str = "k1", status: str = "done",
              iterations: int = 20, log: bool = True, qual_ids: tuple[str, ...] = ("val_00000", "val_00001"),
              size: tuple[int, int] = (24, 32), history_every: int = 0, weighting: str | None = None,
              log_weights: bool = False, shift: float = 0.0, run_id: str | None = None) -> dict:
    """One run's directory; returns its record. ``shift`` moves every primary metric in its better direction."""
    rng = np.random.default_rng(abs(hash((method, tasks, seed, key))) % 2**32)
    ref = method == "single"
    run_id = run_id or f"{method}{'-' + weighting if weighting else ''}_{'+'.join(tasks)}_s{seed}_{key}"
    d = Path(root) / "runs" / run_id
    metrics = {}
    for t in tasks:
        m, hib, base = PRIMARY[t]
        v = base * (1 + (shift if hib else -shift) / 100) + rng.normal(0, base * 0.01)
        metrics[t] = {m: float(v), "loss": float(rng.uniform(0.1, 1))}
    rec = {"run_id": run_id, "status": status, "method": method, "dataset": "synthetic", "tasks": list(tasks),
           "backbone": "resnet18", "seed": seed, "recipe_name": "smoke", "setting_key": key,
           "single_task_reference": ref,
           "config": {"recipe": {"batch_size": 2, "iterations": iterations, "eval": {"edge_protocol": "seism"},
                                 "name": "smoke"}},
           "iterations": iterations, "dataset_info": {"image_size": list(size), "num_classes": {"semseg": 10}}}
    if weighting:
        rec["weighting"] = weighting
    if status == "failed":
        rec.update(error="RuntimeError: CUDA out of memory (fake)", traceback="Traceback (most recent call last):\n"
                   "  ...\nRuntimeError: CUDA out of memory (fake)\n")
    else:
        hist = [{"iteration": i, "metrics": {t: {PRIMARY[t][0]: metrics[t][PRIMARY[t][0]] * (0.5 + 0.5 * i /
                                                                                           iterations)}
                                             for t in tasks}} for i in range(history_every, iterations, history_every)
                ] if history_every else []
        rec.update(metrics=metrics, primary_metrics={t: PRIMARY[t][0] for t in tasks},
                   higher_is_better={t: {PRIMARY[t][0]: PRIMARY[t][1]} for t in tasks},
                   trivial={t: {PRIMARY[t][0]: PRIMARY[t][2] * (0.2 if PRIMARY[t][1] else 2.0)} for t in tasks},
                   params={"total": int(rng.integers(5, 50) * 1e6) if not ref else 11_000_000},
                   flops={"gflops": float(rng.uniform(1, 20))}, train_images_per_s=float(rng.uniform(10, 100)),
                   train_time_s=10.0, resumed_from=0, history=hist, peak_memory={"mb": 1000.0})
    write_record(d, rec)
    if status == "done" and log:
        lines = []
        for i in range(1, iterations + 1):
            losses = {t: float(np.exp(-i / iterations) + rng.uniform(0, 0.1)) for t in tasks}
            row = {"iteration": i, "loss": sum(losses.values()), "losses": losses, "lr": 0.01 * (1 - i / iterations),
                   "step_s": 0.1, "data_s": 0.01}
            if log_weights:
                row["task_weights"] = {t: float(1 + 0.5 * np.sin(i / 3 + k)) for k, t in enumerate(tasks)}
            lines.append(json.dumps(row))
        (d / "train_log.jsonl").write_text("\n".join(lines) + "\n")
    if status == "done":
        h, w = size
        for image_id in qual_ids:
            q = d / DIR_NAME / image_id
            q.mkdir(parents=True, exist_ok=True)
            img_rng = np.random.default_rng(int(image_id[-5:]))  # the same input and target in every run
            Image.fromarray(img_rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(q / IMAGE_NAME)
            for t in tasks:
                prediction_io.write(KIND[t], _target(t, img_rng, h, w), q / f"{t}.gt", target=True)
                prediction_io.write(KIND[t], _arrays(t, rng, h, w), q / t)
    return rec


def write_results(root: Path, methods=("baseline", "mqt"), seeds=(0, 1), tasks=("semseg", "depth"),
                  ref_seeds=(0, 1), **kw) -> list[dict]:
    """A whole grid: every method × seed, and the single-task references."""
    recs = [write_run(root, "single", (t,), s, **kw) for t in tasks for s in ref_seeds]
    recs += [write_run(root, m, tuple(tasks), s, shift=3.0 * i, **kw) for i, m in enumerate(methods) for s in seeds]
    return recs
