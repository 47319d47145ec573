"""Boundary detection scores (ODS F, OIS F, AP) as the BSDS/SEISM MATLAB benchmarks compute them.

Per image and threshold (BSDS ``evaluation_bdry_image``, boundary_image): binarise, thin
(``bwmorph(.., 'thin', Inf)``), match one-to-one against *each* annotator separately within
``max_dist`` x image diagonal, then count

    cntR += matched GT pixels,  sumR += GT pixels     (summed over annotators)
    cntP += predicted pixels matched to any annotator, sumP += predicted pixels.

Dataset level (BSDS ``collect_eval_bdry``): ODS is the best F of the pooled per-threshold R/P
(BSDS: searched on 100 linear interpolation steps between adjacent thresholds; SEISM: the best
threshold itself); OIS pools the counts of each image at its own best (non-interpolated)
threshold; AP is the area under the pooled PR curve, precision interpolated at recall 0:0.01:1
(zero outside the measured range), summed x 0.01. Which released evaluation's details apply
(NMS, thresholds and their comparison, ground truth, empty maps, repeated recalls) is the edge
protocol's (boundary_protocol; default SEISM's, as the multi-task papers used).

Ignore regions (GT value 255): predicted and GT pixels there are removed after thinning, so they
count neither as hits nor as misses. Boundary evaluation is inherently host work (thinning and an
assignment problem per image, threshold and annotator), so it runs in CPU worker processes.
"""
from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import zlib
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from mtbench.metrics.base import Evaluator
from mtbench.threads import cpu_budget
from mtbench.metrics.boundary_image import evaluate_image
from mtbench.metrics.boundary_protocol import (DEFAULT_PROTOCOL, EdgeProtocol, get_protocol, kill_mask,
                                               label_boundaries, mtinet_thresholds, seg2bmap)

IGNORE = 255
MAX_DIST = {"bsds": 0.0075, "pascal": 0.0075, "nyud": 0.011, "sbd": 0.02}  # SEISM eval_method.m and the papers


def uniform_thresholds(n: int) -> np.ndarray:
    """BSDS thresholds: ``linspace(1/(n+1), 1-1/(n+1), n)`` (n = 99 in the benchmark)."""
    if n < 1:
        raise ValueError(f"need at least one threshold, got {n}")
    return np.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n)


def hed_thresholds() -> np.ndarray:
    """The 101 thresholds of SEISM's ``parameters/HED.txt``: 0.001, 0.01, 0.02, ..., 0.99, 0.999.

    Read from jponttuset/seism (commit 6af0cad) and, identical, from the copy in
    prismformore/Boundary-Detection-Evaluation-Tools that InvPT points to; ``str2double`` of
    each line gives these doubles (not ``linspace(0, 1, 101)``: 0 would count every pixel).
    """
    return np.concatenate([[0.001], np.round(np.arange(1, 100) * 0.01, 2), [0.999]])


NAMED_THRESHOLDS = {"hed": hed_thresholds, "mtinet": mtinet_thresholds}


def resolve_thresholds(thresholds: int | str | Sequence[float] | np.ndarray) -> np.ndarray:
    """n uniform thresholds, a named set (``"hed"``: SEISM's HED.txt, ``"mtinet"``: 0.01..0.99 as
    MTI-Net writes them), or an increasing list."""
    if isinstance(thresholds, str):
        if thresholds not in NAMED_THRESHOLDS:
            raise ValueError(f"unknown threshold set '{thresholds}'; use {', '.join(map(repr, NAMED_THRESHOLDS))}, "
                             "an integer count, or a list")
        return NAMED_THRESHOLDS[thresholds]()
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


def _ratios(counts: np.ndarray, seism: bool, pooled: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """R, P from counts (..., 4). BSDS: x / max(1, sum). SEISM sets (R, P) = (1, 0) without GT and
    (0, 1) without predictions; where both are empty, its per-threshold pooling (``gather_measure``)
    checks predictions last and its per-image code (``eval_cont``, ``general_ois``) checks GT first."""
    cnt_r, sum_r, cnt_p, sum_p = (counts[..., k].astype(np.float64) for k in range(4))
    r = cnt_r / (sum_r + (sum_r == 0))
    p = cnt_p / (sum_p + (sum_p == 0))
    if seism:
        no_gt, no_pred = sum_r == 0, sum_p == 0
        first, second = ((no_gt, (1.0, 0.0)), (no_pred, (0.0, 1.0))) if pooled else ((no_pred, (0.0, 1.0)), (no_gt, (1.0, 0.0)))
        for mask, (rv, pv) in (first, second):  # the later assignment wins, as in the MATLAB code
            r = np.where(mask, rv, r)
            p = np.where(mask, pv, p)
    return r, p


def _interpolated_best(thr: np.ndarray, r: np.ndarray, p: np.ndarray) -> tuple[float, float, float, float]:
    """BSDS ``maxF``: best F over 100 linear steps between adjacent thresholds (first maximum)."""
    d = np.linspace(0.0, 1.0, 100)
    ts = np.concatenate([[thr[0]], (thr[1:, None] * d + thr[:-1, None] * (1 - d)).ravel()])
    rs = np.concatenate([[r[0]], (r[1:, None] * d + r[:-1, None] * (1 - d)).ravel()])
    ps = np.concatenate([[p[0]], (p[1:, None] * d + p[:-1, None] * (1 - d)).ravel()])
    fs = _fmeasure(rs, ps)
    k = int(np.argmax(fs))
    return float(ts[k]), float(rs[k]), float(ps[k]), float(fs[k])


def curve_scores(thresholds: np.ndarray, R: np.ndarray, P: np.ndarray,
                 protocol: str | EdgeProtocol = DEFAULT_PROTOCOL) -> tuple[tuple[float, float, float, float], float]:
    """((ODS threshold, R, P, F), AP) from the pooled per-threshold recall and precision.

    AP interpolates precision at recall 0, 0.01, ..., 1 over the distinct recall values (zero
    outside their range), as ``interp1`` after MATLAB's ``unique``; which of repeated recalls is
    kept is the protocol's (``ap_last_tie``)."""
    proto = get_protocol(protocol)
    thr, R, P = (np.asarray(x, dtype=np.float64) for x in (thresholds, R, P))
    if proto.interpolated_ods:
        ods = _interpolated_best(thr, R, P)
    else:
        k = int(np.argmax(_fmeasure(R, P)))
        ods = (float(thr[k]), float(R[k]), float(P[k]), float(_fmeasure(R[k], P[k])))
    if proto.ap_last_tie:
        ru, idx = np.unique(R[::-1], return_index=True)
        idx = len(R) - 1 - idx
    else:
        ru, idx = np.unique(R, return_index=True)
    ap = float(np.interp(np.linspace(0, 1, 101), ru, P[idx], left=0.0, right=0.0).sum() * 0.01) if ru.size > 1 else 0.0
    return ods, ap


def summarize(thresholds: np.ndarray, counts: np.ndarray, protocol: str | EdgeProtocol = DEFAULT_PROTOCOL) -> BoundaryResult:
    """Dataset scores from per-image counts (N, T, 4): BSDS ``collect_eval_bdry`` or SEISM's
    ``gather_measure`` / ``general_ods`` / ``general_ois`` / ``general_ap``, per the protocol."""
    proto = get_protocol(protocol)
    thr = np.asarray(thresholds, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, len(thr), 4)
    per_image = np.zeros((len(counts), 4))
    best = np.zeros(4, dtype=np.int64)
    for n, c in enumerate(counts):
        r, p = _ratios(c, proto.seism_empty)
        per_image[n] = _interpolated_best(thr, r, p)
        f = np.round(_fmeasure(r, p), 6) if proto.printed_image_f else _fmeasure(r, p)
        best += c[int(np.argmax(f))]  # OIS: each image at its own best threshold (first of equals)
    R, P = _ratios(counts.sum(axis=0), proto.seism_empty, pooled=True)
    F = _fmeasure(R, P)
    (ods_thr, ods_r, ods_p, ods_f), ap = curve_scores(thr, R, P, proto)
    ois_r, ois_p = _ratios(best, proto.seism_empty)
    return BoundaryResult(ods_f=ods_f, ods_r=ods_r, ods_p=ods_p, ods_thr=ods_thr, ois_f=float(_fmeasure(ois_r, ois_p)),
                          ois_r=float(ois_r), ois_p=float(ois_p), ap=ap, thr=thr, R=R, P=P, F=F,
                          per_image=per_image, counts=counts)


def _task(args: tuple) -> np.ndarray:
    pred, gts, ignore, segment, kw = args
    proto: EdgeProtocol = kw["protocol"]
    if proto.gt_from_labels:
        gts = [label_boundaries(g) for g in gts]
    kill = None
    if segment is not None:  # kill_internal: the class's own segment, away from its boundary
        seg = np.asarray(segment, dtype=bool)
        kill = kill_mask(seg, gts[0] if proto.kill_thinned else seg2bmap(seg), kw["max_dist"])
    return evaluate_image(pred, gts, kw["thresholds"], kw["max_dist"], nms=kw["nms"], strict=proto.strict,
                          ignore=ignore, kill=kill, kill_thinned=proto.kill_thinned)


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
    """Worker processes come out of this process's CPU budget (affinity, SLURM, OMP_NUM_THREADS), at most 8."""
    return min(cpu_budget(), 8)


def protocol_thresholds(protocol: str | EdgeProtocol) -> np.ndarray:
    """The thresholds a protocol sweeps by default (SEISM's HED list, MTI-Net's 0.01..0.99, BSDS's 99)."""
    return resolve_thresholds(get_protocol(protocol).thresholds)


def evaluate_boundaries(preds: Iterable[np.ndarray], gts: Iterable[Sequence[np.ndarray]], *, max_dist: float,
                        protocol: str | EdgeProtocol = DEFAULT_PROTOCOL,
                        thresholds: int | str | Sequence[float] | None = None, nms: bool | None = None,
                        workers: int | None = None, progress: bool = True,
                        ignore_masks: Iterable[np.ndarray | None] | None = None,
                        segments: Iterable[np.ndarray | None] | None = None) -> BoundaryResult:
    """Score soft boundary maps against one or more annotator maps per image, by ``protocol``.

    ``preds``: (H, W) probabilities (float) or uint8 maps read as value / 255. ``gts``: per image a
    list of annotator maps: label maps when the protocol derives boundaries from labels
    (``gt_from_labels``: any 0/1 edge map is a label map too), else boundary maps. ``thresholds``
    and ``nms`` default to the protocol's. ``ignore_masks``: per-image pixels to leave out.
    ``segments``: per-image masks of the class's own segment for kill_internal (SBD), or None.
    Results do not depend on ``workers`` (default: the CPU budget, at most 8).
    """
    proto = get_protocol(protocol)
    thr = protocol_thresholds(proto) if thresholds is None else resolve_thresholds(thresholds)
    kw = dict(thresholds=thr, max_dist=max_dist, nms=proto.nms if nms is None else nms, protocol=proto)
    ignores = ignore_masks if ignore_masks is not None else itertools.repeat(None)
    segs = segments if segments is not None else itertools.repeat(None)
    items = ((p, [np.asarray(g) for g in g_list], ig, sg, kw) for p, g_list, ig, sg in zip(preds, gts, ignores, segs))
    total = len(preds) if hasattr(preds, "__len__") else None  # type: ignore[arg-type]
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers > 1:  # compile (or load numba's cache) once here; forked workers inherit it
        from mtbench.metrics.boundary_sweep import warm_up
        warm_up()
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
    return summarize(thr, np.stack(counts), proto)


class BoundaryEvaluator(Evaluator):
    """odsF / oisF / AP in percent (papers print odsF like 77.10), by an edge protocol (default SEISM's).

    ``update`` quantises predictions to uint8 by truncation, trunc(p * 255) in float32, as the
    reference pipelines write their PNGs (ATRC/InvPT/MQTransformer ``Image.fromarray((255 *
    sigmoid).astype(np.uint8))``, MTI-Net likewise): rounding instead moves AP by about a point. It
    keeps them zlib-compressed on the host with the GT (on CUDA the copy to the host runs behind the GPU's queue,
    one batch late, so ``update`` never waits for the GPU): the score needs whole-dataset threshold
    sweeps with thinning and assignment problems, which is CPU work done in ``compute``. Border
    rows/columns that are entirely ignore (padding) are cropped first, so the image diagonal that
    scales ``max_dist`` and the NMS border zone are those of the native image. Under a protocol that
    reads ground truth as a label map (SEISM), the 0/1 target is that map: its boundaries are
    thin(seg2bmap(target)), as SEISM derives them from NYUD's edge PNGs (for PASCAL-Context SEISM
    reads the Context ``LabelMap``, which an edge target does not carry). The state is a list of
    images, not sums: ``state_tensors()`` is empty, so in distributed evaluation gather the
    predictions on one process before ``compute``.
    """

    higher_is_better = {"odsF": True, "oisF": True, "AP": True}
    units = {"odsF": "%", "oisF": "%", "AP": "%"}

    def __init__(self, max_dist: float, protocol: str | EdgeProtocol = DEFAULT_PROTOCOL,
                 thresholds: int | str | Sequence[float] | None = None, nms: bool | None = None,
                 workers: int | None = None) -> None:
        super().__init__()
        self.max_dist = max_dist
        self.protocol = get_protocol(protocol)
        self.thresholds = protocol_thresholds(self.protocol) if thresholds is None else resolve_thresholds(thresholds)
        self.nms = self.protocol.nms if nms is None else nms
        self.workers = workers
        self._images: list[tuple[tuple[int, int], bytes, bytes]] = []
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.cuda.Event] | None = None  # a batch being copied

    def reset(self) -> None:
        super().reset()
        self._images, self._pending = [], None

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.dim() == 4 and pred.shape[1] == 1:
            pred = pred[:, 0]
        if pred.shape != target.shape or pred.dim() != 3:
            raise ValueError(f"expected pred and target of shape (B, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}")
        q = (pred.detach().float().clamp(0, 1) * 255).to(torch.uint8)  # truncates
        t = target.detach()
        if q.device.type != "cuda":
            self._store(q.cpu().numpy(), t.cpu().numpy())
            return
        # No host sync per batch: copy into pinned memory behind the GPU's queue and store the previous batch,
        # whose copy is done by now; the last one is stored by ``compute`` / ``sync``.
        host = [torch.empty(x.shape, dtype=x.dtype, pin_memory=True).copy_(x, non_blocking=True) for x in (q, t)]
        event = torch.cuda.Event()
        event.record()
        self._drain()
        self._pending = (host[0], host[1], event)

    def _drain(self) -> None:
        if self._pending is not None:
            q, t, event = self._pending
            self._pending = None
            event.synchronize()
            self._store(q.numpy(), t.numpy())

    def _store(self, q: np.ndarray, t: np.ndarray) -> None:
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

        self._drain()
        if context().enabled:
            gathered = gather_objects(self._images)
            self._images = [im for part in gathered for im in part] if gathered is not None else []

    def compute(self) -> dict[str, float]:
        self._drain()
        if not self._images:
            return {"odsF": math.nan, "oisF": math.nan, "AP": math.nan}
        a, b, c = itertools.tee(self._decoded(), 3)  # consumed in lockstep: one image buffered
        res = evaluate_boundaries(
            (p for p, _ in a), ([g == 1] for _, g in b), ignore_masks=(g == IGNORE for _, g in c),
            max_dist=self.max_dist, protocol=self.protocol, thresholds=self.thresholds, nms=self.nms,
            workers=self.workers, progress=False)
        return {"odsF": 100.0 * res.ods_f, "oisF": 100.0 * res.ois_f, "AP": 100.0 * res.ap}
