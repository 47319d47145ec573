"""Boundary detection scores (ODS F, OIS F, AP) by the BSDS protocol, without MATLAB.

Per image and threshold (BSDS ``evaluation_bdry_image``): binarise ``prob >= thr``, thin
(``bwmorph(.., 'thin', Inf)``), match one-to-one against *each* annotator separately within
``max_dist`` x image diagonal, then count

    cntR += matched GT pixels,  sumR += GT pixels     (summed over annotators)
    cntP += predicted pixels matched to any annotator, sumP += predicted pixels.

Dataset level (BSDS ``collect_eval_bdry``): ODS is the best F of the pooled per-threshold R/P,
searched on 100 linear interpolation steps between adjacent thresholds; OIS pools the counts of
each image at its own best (non-interpolated) threshold; AP is the area under the pooled PR curve,
precision interpolated at recall 0:0.01:1 (zero outside the measured range), summed x 0.01.

SEISM, which the multi-task papers used, differs in three details: it applies structured-edge NMS
first (``nms=True`` here, see boundary_nms), it takes ODS as the plain maximum over its 101
thresholds (the interpolation only matters with few thresholds: with 99 or 101 the two agree on
the BSDS mini-bench) and it sets P = 1 where an image or threshold has no predicted pixel
(BSDS: P = 0), which only moves AP when the highest thresholds leave a map empty.

Ignore regions (GT value 255): predicted and GT pixels there are removed after thinning, so they
count neither as hits nor as misses. Boundary evaluation is inherently host work (thinning and an
assignment problem per image, threshold and annotator), so it runs in CPU worker processes.
"""
from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import zlib
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from mtbench.metrics.base import Evaluator
from mtbench.metrics.boundary_image import evaluate_image

IGNORE = 255
MAX_DIST = {"bsds": 0.0075, "pascal": 0.0075, "nyud": 0.011}


def uniform_thresholds(n: int) -> np.ndarray:
    """BSDS thresholds: ``linspace(1/(n+1), 1-1/(n+1), n)`` (n = 99 in the benchmark)."""
    if n < 1:
        raise ValueError(f"need at least one threshold, got {n}")
    return np.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n)


def hed_thresholds() -> np.ndarray:
    """The 101 thresholds of SEISM's HED parameter file: 0.001, 0.01, 0.02, ..., 0.99, 0.999.

    Taken from SEISM's ``parameters/HED_VOC_Khoreva.txt``; the multi-task repos copy
    ``parameters/HED.txt``, which we could not read, and submit 101+1 jobs for it, consistent
    with this 101-value list (not ``linspace(0, 1, 101)``: 0 would count every pixel as edge).
    """
    return np.concatenate([[0.001], np.round(np.arange(1, 100) * 0.01, 2), [0.999]])


def resolve_thresholds(thresholds: int | str | Sequence[float] | np.ndarray) -> np.ndarray:
    """n uniform thresholds, the named SEISM set ``"hed"`` (what recipes use for paper parity), or a list."""
    if isinstance(thresholds, str):
        if thresholds != "hed":
            raise ValueError(f"unknown threshold set '{thresholds}'; use 'hed', an integer count, or a list")
        return hed_thresholds()
    if isinstance(thresholds, (int, np.integer)):
        return uniform_thresholds(int(thresholds))
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    if thr.size == 0 or np.any(np.diff(thr) <= 0):
        raise ValueError("thresholds must be a non-empty increasing sequence")
    return thr


@dataclass
class BoundaryResult:
    """Scores as fractions in [0, 1]; per-threshold curves; per-image best (thr, R, P, F)."""

    ods_f: float
    ods_r: float
    ods_p: float
    ods_thr: float
    ois_f: float
    ois_r: float
    ois_p: float
    ap: float
    thr: np.ndarray
    R: np.ndarray
    P: np.ndarray
    F: np.ndarray
    per_image: np.ndarray  # (N, 4): interpolated best threshold, R, P, F (eval_bdry_img.txt)
    counts: np.ndarray  # (N, T, 4) int64: cntR, sumR, cntP, sumP

    def as_dict(self) -> dict[str, Any]:
        out = {k: float(getattr(self, k)) for k in
               ("ods_f", "ods_r", "ods_p", "ods_thr", "ois_f", "ois_r", "ois_p", "ap")}
        out.update(thr=self.thr.tolist(), R=self.R.tolist(), P=self.P.tolist(), F=self.F.tolist(),
                   per_image=self.per_image.tolist())
        return out


def _fmeasure(r: np.ndarray, p: np.ndarray) -> np.ndarray:
    return 2 * p * r / (p + r + ((p + r) == 0))


def _ratios(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cnt_r, sum_r, cnt_p, sum_p = (counts[..., k].astype(np.float64) for k in range(4))
    return cnt_r / (sum_r + (sum_r == 0)), cnt_p / (sum_p + (sum_p == 0))


def _interpolated_best(thr: np.ndarray, r: np.ndarray, p: np.ndarray) -> tuple[float, float, float, float]:
    """BSDS ``maxF``: best F over 100 linear steps between adjacent thresholds (first maximum)."""
    d = np.linspace(0.0, 1.0, 100)
    ts = np.concatenate([[thr[0]], (thr[1:, None] * d + thr[:-1, None] * (1 - d)).ravel()])
    rs = np.concatenate([[r[0]], (r[1:, None] * d + r[:-1, None] * (1 - d)).ravel()])
    ps = np.concatenate([[p[0]], (p[1:, None] * d + p[:-1, None] * (1 - d)).ravel()])
    fs = _fmeasure(rs, ps)
    k = int(np.argmax(fs))
    return float(ts[k]), float(rs[k]), float(ps[k]), float(fs[k])


def summarize(thresholds: np.ndarray, counts: np.ndarray) -> BoundaryResult:
    """Dataset scores from per-image counts (N, T, 4), as BSDS ``collect_eval_bdry``."""
    thr = np.asarray(thresholds, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, len(thr), 4)
    per_image = np.zeros((len(counts), 4))
    best = np.zeros(4, dtype=np.int64)
    for n, c in enumerate(counts):
        r, p = _ratios(c)
        per_image[n] = _interpolated_best(thr, r, p)
        best += c[int(np.argmax(_fmeasure(r, p)))]
    total = counts.sum(axis=0)
    R, P = _ratios(total)
    F = _fmeasure(R, P)
    ods_thr, ods_r, ods_p, ods_f = _interpolated_best(thr, R, P)
    ois_r, ois_p = _ratios(best)
    # AP: MATLAB unique() keeps the first occurrence of each recall value (R2013a and later).
    ru, idx = np.unique(R, return_index=True)
    ap = float(np.interp(np.linspace(0, 1, 101), ru, P[idx], left=0.0, right=0.0).sum() * 0.01) if ru.size > 1 else 0.0
    return BoundaryResult(ods_f=ods_f, ods_r=ods_r, ods_p=ods_p, ods_thr=ods_thr, ois_f=float(_fmeasure(ois_r, ois_p)),
                          ois_r=float(ois_r), ois_p=float(ois_p), ap=ap, thr=thr, R=R, P=P, F=F,
                          per_image=per_image, counts=counts)


def _task(args: tuple) -> np.ndarray:
    pred, gts, ignore, kw = args
    return evaluate_image(pred, gts, ignore=ignore, **kw)


def _ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
    """Results in input order with a bounded number of images in flight (lazy inputs stay lazy)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    # fork, like torch's DataLoader workers: no re-import of the caller's main script (which may
    # lack a __main__ guard) and no second torch import; the workers only run numpy/scipy code.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 3 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def evaluate_boundaries(preds: Iterable[np.ndarray], gts: Iterable[Sequence[np.ndarray]], *, max_dist: float,
                        thresholds: int | Sequence[float] = 99, nms: bool = False, thin: bool = True,
                        workers: int | None = None, progress: bool = True,
                        ignore_masks: Iterable[np.ndarray | None] | None = None) -> BoundaryResult:
    """Score soft boundary maps against one or more annotator maps per image.

    ``preds``: (H, W) probabilities (float) or uint8 maps read as value / 255. ``gts``: per image a
    list of boolean annotator maps. ``ignore_masks``: optional per-image boolean maps of pixels to
    leave out. Results do not depend on ``workers`` (default ``min(cpu count, 8)``).
    """
    thr = resolve_thresholds(thresholds)
    kw = dict(thresholds=thr, max_dist=max_dist, nms=nms, thin=thin)
    ignores = ignore_masks if ignore_masks is not None else itertools.repeat(None)
    items = ((p, [np.asarray(g) for g in g_list], ig, kw) for p, g_list, ig in zip(preds, gts, ignores))
    total = len(preds) if hasattr(preds, "__len__") else None  # type: ignore[arg-type]
    workers = default_workers() if workers is None else max(1, int(workers))
    results = _ordered_map(_task, items, workers)
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        columns = (TextColumn("boundary eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("images", total=total)
            counts = []
            for c in results:
                counts.append(c)
                bar.advance(task)
    else:
        counts = list(results)
    if not counts:
        raise ValueError("no images to evaluate")
    return summarize(thr, np.stack(counts))


class BoundaryEvaluator(Evaluator):
    """odsF / oisF / AP in percent (papers print odsF like 77.10).

    ``update`` quantises predictions to uint8 (round(p * 255)), as the papers' PNG dumps did, and
    keeps them zlib-compressed on the host with the GT: the score needs whole-dataset threshold
    sweeps with thinning and assignment problems, which is CPU work done in ``compute``. Border
    rows/columns that are entirely ignore (padding) are cropped first, so the image diagonal that
    scales ``max_dist`` and the NMS border zone are those of the native image. The state is a list
    of images, not sums: ``state_tensors()`` is empty, so in distributed evaluation gather the
    predictions on one process before ``compute``.
    """

    higher_is_better = {"odsF": True, "oisF": True, "AP": True}

    def __init__(self, max_dist: float, thresholds: int | Sequence[float] = 99, nms: bool = True,
                 workers: int | None = None) -> None:
        super().__init__()
        self.max_dist = max_dist
        self.thresholds = resolve_thresholds(thresholds)
        self.nms = nms
        self.workers = workers
        self._images: list[tuple[tuple[int, int], bytes, bytes]] = []

    def reset(self) -> None:
        super().reset()
        self._images = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.dim() == 4 and pred.shape[1] == 1:
            pred = pred[:, 0]
        if pred.shape != target.shape or pred.dim() != 3:
            raise ValueError(f"expected pred and target of shape (B, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}")
        q = (pred.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        t = target.detach().cpu().numpy()
        for p_i, t_i in zip(q, t):
            valid = t_i != IGNORE
            rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
            if rows.size == 0:
                continue  # nothing annotated at all
            win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            gt = np.where(valid[win], (t_i[win] > 0.5).astype(np.uint8), IGNORE).astype(np.uint8)
            self._images.append((gt.shape, zlib.compress(np.ascontiguousarray(p_i[win]).tobytes(), 1),
                                 zlib.compress(gt.tobytes(), 1)))

    def _decoded(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for shape, p, g in self._images:
            yield (np.frombuffer(zlib.decompress(p), np.uint8).reshape(shape),
                   np.frombuffer(zlib.decompress(g), np.uint8).reshape(shape))

    def sync(self, device=None) -> None:
        """Data parallel: gather every rank's images on rank 0, where ``compute`` runs."""
        from mtbench.distributed import context, gather_objects

        if context().enabled:
            gathered = gather_objects(self._images)
            self._images = [im for part in gathered for im in part] if gathered is not None else []

    def compute(self) -> dict[str, float]:
        if not self._images:
            return {"odsF": math.nan, "oisF": math.nan, "AP": math.nan}
        a, b, c = itertools.tee(self._decoded(), 3)  # consumed in lockstep: one image buffered
        res = evaluate_boundaries(
            (p for p, _ in a), ([g == 1] for _, g in b), ignore_masks=(g == IGNORE for _, g in c),
            max_dist=self.max_dist, thresholds=self.thresholds, nms=self.nms, workers=self.workers,
            progress=False)
        return {"odsF": 100.0 * res.ods_f, "oisF": 100.0 * res.ois_f, "AP": 100.0 * res.ap}
