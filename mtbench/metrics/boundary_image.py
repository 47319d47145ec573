"""Per-image boundary counts over a threshold sweep (BSDS ``evaluation_bdry_image`` / SEISM).

At each threshold: binarise, thin, match one-to-one against each annotator within the tolerance,
count. The sweep shares its work: the binary maps are nested, so a threshold that switches no
pixel repeats the previous counts; thinning visits foreground pixels only (boundary_thin); and the
candidate pairs (every GT pixel within reach of every pixel that any thinned map holds) are found
once per image. With one annotator, the counts of all thresholds come from one matching repaired
as pixels enter and leave (boundary_sweep); with several, each threshold keeps the pairs of its own
pixels and is solved as one ``correspondPixels``-style matching per annotator (boundary_match).
Both give exactly the counts of one solve per threshold and annotator.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt

from mtbench.metrics.boundary_match import candidate_pairs, dense_ranks, integer_costs, match_pairs, max_dist_pixels
from mtbench.metrics.boundary_nms import structured_edge_nms
from mtbench.metrics.boundary_thin import thin


def evaluate_image(pred: np.ndarray, gts: Sequence[np.ndarray], thresholds: np.ndarray, max_dist: float, *,
                   nms: bool = False, strict: bool = False, ignore: np.ndarray | None = None,
                   kill: np.ndarray | None = None, kill_thinned: bool = False) -> np.ndarray:
    """Counts (T, 4) = cntR, sumR, cntP, sumP for one image; ``pred`` is float prob or uint8/255.

    ``strict``: a pixel is an edge where prob > thr (SEISM's ``read_one_cont_png``), else where
    prob >= max(eps, thr) (BSDS). ``ignore``: pixels left out of both maps after thinning.
    ``kill``: predicted pixels to drop (kill_internal), from the soft map (SEISM) or, with
    ``kill_thinned``, from the thinned map (the SBD benchmark).
    """
    prob = pred / 255.0 if pred.dtype == np.uint8 else np.asarray(pred, dtype=np.float64)
    if prob.ndim != 2:
        raise ValueError(f"prediction must be (H, W), got {prob.shape}")
    keep = None if ignore is None else ~np.asarray(ignore, dtype=bool)
    gt_maps = [np.asarray(g, dtype=bool) if keep is None else np.asarray(g, dtype=bool) & keep for g in gts]
    for g in gt_maps:
        if g.shape != prob.shape:
            raise ValueError(f"ground truth {g.shape} and prediction {prob.shape} differ in shape")
    thr = np.asarray(thresholds, dtype=np.float64)
    if not strict:
        thr = np.maximum(np.finfo(np.float64).eps, thr)
    if nms:
        # SEISM's read_one_cont_png: NMS output (single) > str2double(thr); MATLAB compares a
        # single with a double in single precision, hence float32 thresholds.
        prob = structured_edge_nms(prob.astype(np.float32))
        thr = thr.astype(np.float32)
    if kill is not None and not kill_thinned:
        prob = np.where(kill, 0, prob).astype(prob.dtype)
    drop = None
    if keep is not None or (kill is not None and kill_thinned):
        drop = ~keep if keep is not None else np.zeros(prob.shape, dtype=bool)
        if kill is not None and kill_thinned:
            drop |= kill
    maps = _thinned_maps(prob, thr, strict, drop)
    return _counts(maps, gt_maps, max_dist_pixels(prob.shape, max_dist))


def _thinned_maps(prob: np.ndarray, thr: np.ndarray, strict: bool, drop: np.ndarray | None) -> list[np.ndarray]:
    """Flat indices of each threshold's (thinned) edge pixels; a map that equals the previous
    threshold's is the same array object, so its counts are copied rather than recomputed."""
    flat = prob.ravel()
    values = np.sort(flat)
    side = "right" if strict else "left"
    sizes = flat.size - np.searchsorted(values, thr.astype(prob.dtype), side=side)
    maps: list[np.ndarray] = []
    for t, th in enumerate(thr):
        if t and sizes[t] == sizes[t - 1]:  # nested maps of equal size are equal
            maps.append(maps[-1])
            continue
        bmap = prob > th if strict else prob >= th
        if sizes[t]:
            bmap = thin(bmap)
        if drop is not None:
            bmap &= ~drop
        maps.append(np.flatnonzero(bmap))
    return maps


def _counts(maps: list[np.ndarray], gt_maps: list[np.ndarray], radius: float) -> np.ndarray:
    shape = gt_maps[0].shape if gt_maps else None
    counts = np.zeros((len(maps), 4), dtype=np.int64)
    gt_total = sum(int(g.sum()) for g in gt_maps)
    if shape is None or not maps:
        union = np.zeros(0, dtype=np.int64)
    else:  # marked rather than np.unique'd: the maps hold up to 5M indices in all
        seen = np.zeros(gt_maps[0].size, dtype=bool)
        for t, m in enumerate(maps):
            if not t or m is not maps[t - 1]:
                seen[m] = True
        union = np.flatnonzero(seen)
    if union.size == 0:
        for t, m in enumerate(maps):
            counts[t] = (0, gt_total, 0, m.size)
        return counts
    pairs = []
    for g in gt_maps:
        # Only pixels within reach of this annotator's boundary can have a candidate.
        near = np.flatnonzero(distance_transform_edt(~g).ravel()[union] <= radius) if g.any() else union[:0]
        coords = np.stack(np.unravel_index(union[near], shape), axis=1)
        i, j, d = candidate_pairs(coords, g, radius)
        i = near[i]
        j = (np.cumsum(g.ravel()) - 1)[j]  # GT pixel number, in index order
        order = np.lexsort((j, i)) if len(gt_maps) > 1 else slice(None)  # match_pairs wants (i, j) order
        pairs.append((i[order], j[order], d[order], int(g.sum())))
    if len(pairs) == 1:  # one annotator: cntP = cntR = the number of pairs
        k = _sweep_counts(maps, union, pairs[0], radius)
        for t, m in enumerate(maps):
            counts[t] = (k[t], gt_total, k[t], m.size)
        return counts
    present = np.zeros(union.size, dtype=bool)
    for t, m in enumerate(maps):
        if t and m is maps[t - 1]:
            counts[t] = counts[t - 1]
            continue
        present[:] = False
        present[np.searchsorted(union, m)] = True
        cnt_r, hit = 0, np.zeros(union.size, dtype=bool)
        if m.size:
            for i, j, d, n_gt in pairs:
                sel = present[i]
                m1, m2 = match_pairs(i[sel], j[sel], d[sel], union.size, n_gt, radius)
                hit |= m1
                cnt_r += int(m2.sum())
        counts[t] = (cnt_r, gt_total, int(hit.sum()), m.size)
    return counts


def _sweep_counts(maps: list[np.ndarray], union: np.ndarray, pairs: tuple, radius: float) -> np.ndarray:
    """Pairs per threshold for one annotator: the maps from the highest threshold down, as sets of
    the predicted pixels that have a candidate (the others never pair)."""
    from mtbench.metrics.boundary_sweep import sweep_optima  # loads numba (0.15 s) only when needed

    i, j, d, n_gt = pairs
    k = np.zeros(len(maps), dtype=np.int64)
    if i.size == 0:
        return k
    near, rank = dense_ranks(i, union.size)
    lookup = np.full(union.size, -1, dtype=np.int64)
    lookup[near] = np.arange(near.size)
    steps, step_of = [], np.zeros(len(maps), dtype=np.int64)
    for t in range(len(maps) - 1, -1, -1):
        if t == len(maps) - 1 or maps[t] is not maps[t + 1]:
            idx = lookup[np.searchsorted(union, maps[t])]
            steps.append(idx[idx >= 0])
        step_of[t] = len(steps) - 1
    w, ow = integer_costs(d, radius)
    return sweep_optima(steps, rank, j, w, near.size, n_gt, ow)[0][step_of]
