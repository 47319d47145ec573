"""CPU seconds per image of the boundary evaluator, side by side with the implementations it
replaced, in one process; and a check that all give the same per-threshold counts.

    python benchmarks/boundary_speed.py [--repeats 1] [--skip-previous]

Columns: ``now``; ``pairs`` = now, but one annotator's counts from the full pair sets of
``match_pairs`` (rectangular LAPJVsp on every component), as before ``match_count``; ``00f0945``
= the frozen implementation below. Where the time went (cProfile, 2 synthetic NYUD images, 101
thresholds, NMS, before match_count: 6.3 s CPU per image): 85% in scipy's LAPJVsp
(``min_weight_full_bipartite_matching``), nearly all of it on the one large component per
threshold (6.7k GT x 13k predicted pixels at low thresholds); its rectangular form resets its
column arrays for every row, i.e. rows x columns work. 8% thinning (197 maps), the rest sorting
and CSR building. LAPJVsp itself (not its searches) is the cost: a faithful Python port of it
with sparse state (identical matchings) was slower still, because ~70% of the rows of the large
components need a search. The square form used now lets LAPJVsp's initial reductions assign
rows before the per-row searches, about 2x less on those components.

The previous implementation (commit 00f0945: skimage thinning of every thresholded map, and one
LAPJVsp solve per threshold and annotator on the whole graph) is frozen below, for this comparison
only. Cases: a synthetic NYUD-size image (425 x 560, maxDist 0.011, SEISM's 101 thresholds) with
and without NMS, and the BSDS mini-bench under its own protocol (5 and 99 thresholds, no NMS;
skipped if the data is absent). The synthetic prediction is a blurred, 1-px-shifted copy of a
Voronoi boundary map plus textured noise, i.e. thick soft ridges like a network output. Times are
process CPU seconds (time.process_time), best of --repeats; a dataset costs about seconds/image x
images, spread over the worker processes.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from skimage.morphology import thin as skimage_thin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mtbench.metrics.boundary_image as boundary_image  # noqa: E402
from mtbench.metrics.boundary import evaluate_image, hed_thresholds, uniform_thresholds  # noqa: E402
from mtbench.metrics.boundary_match import candidate_pairs, match_count, match_pairs, max_dist_pixels  # noqa: E402
from mtbench.metrics.boundary_nms import structured_edge_nms  # noqa: E402


def pairs_count(i, j, d, n_pred, n_gt, radius) -> int:
    """One annotator's pair count from the full matching (the path before match_count)."""
    return int(match_pairs(i, j, d, n_pred, n_gt, radius)[1].sum())


def evaluate_with(count):
    def run(p, g, thr, md, nms):
        boundary_image.match_count = count
        try:
            return evaluate_image(p, g, thr, md, nms=nms)
        finally:
            boundary_image.match_count = match_count
    return run


def previous_correspond(pred: np.ndarray, gt: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Frozen: the whole graph in one LAPJVsp call (rows: the smaller side, private outlier columns)."""
    m1 = np.zeros(pred.shape, dtype=bool)
    m2 = np.zeros(gt.shape, dtype=bool)
    if not pred.any() or not gt.any():
        return m1, m2
    p = np.argwhere(pred)
    i, j, d = candidate_pairs(p, gt, radius)
    if i.size == 0:
        return m1, m2
    pu, i = np.unique(i, return_inverse=True)
    gu, j = np.unique(j, return_inverse=True)
    n1, n2 = len(pu), len(gu)
    w = np.rint(d * 100) + 1.0
    ow = float(math.ceil(100 * radius * 100)) + 1.0
    swapped = n1 > n2
    if swapped:
        i, j, n1, n2 = j, i, n2, n1
    graph = csr_matrix((np.concatenate([w, np.full(n1, ow)]),
                        (np.concatenate([i, np.arange(n1)]), np.concatenate([j, n2 + np.arange(n1)]))),
                       shape=(n1, n2 + n1))
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    real = col_ind < n2
    a, b = (col_ind[real], row_ind[real]) if swapped else (row_ind[real], col_ind[real])
    mp = p[pu[a]]
    m1[mp[:, 0], mp[:, 1]] = True
    m2.flat[gu[b]] = True
    return m1, m2


def previous_evaluate_image(pred: np.ndarray, gts: list[np.ndarray], thresholds: np.ndarray, max_dist: float,
                            nms: bool) -> np.ndarray:
    """Frozen: threshold, skimage-thin and match every map from scratch (BSDS >= comparison)."""
    prob = pred / 255.0 if pred.dtype == np.uint8 else pred.astype(np.float64)
    thr = np.maximum(np.finfo(np.float64).eps, thresholds)
    if nms:
        prob = structured_edge_nms(prob.astype(np.float32))
        thr = thr.astype(np.float32)
    radius = max_dist_pixels(prob.shape, max_dist)
    gt_total = sum(int(g.sum()) for g in gts)
    counts = np.zeros((len(thr), 4), dtype=np.int64)
    prev = None
    for t, th in enumerate(thr):
        bmap = prob >= th
        if bmap.any():
            bmap = skimage_thin(bmap)
        if prev is not None and np.array_equal(bmap, prev):
            counts[t] = counts[t - 1]
            continue
        prev = bmap
        cnt_r, acc = 0, np.zeros_like(bmap)
        if bmap.any():
            for g in gts:
                m1, m2 = previous_correspond(bmap, g, radius)
                acc |= m1
                cnt_r += int(m2.sum())
        counts[t] = (cnt_r, gt_total, int(acc.sum()), int(bmap.sum()))
    return counts


def synthetic_nyud(seed: int = 0, h: int = 425, w: int = 560) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, [h, w], size=(40, 2))
    yy, xx = np.mgrid[:h, :w]
    d2 = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    lab = np.argmin(d2, axis=-1)
    gt = ndi.maximum_filter(lab, 2) != ndi.minimum_filter(lab, 2)
    soft = ndi.gaussian_filter(np.roll(gt.astype(float), 1, axis=1), 2.0)
    noise = ndi.gaussian_filter(rng.random((h, w)), 3) * rng.random((h, w))
    soft = np.clip(soft / soft.max() + 0.15 * noise, 0, 1)
    return (soft * 255).astype(np.uint8), gt


def minibench() -> tuple[list[np.ndarray], list[list[np.ndarray]]] | None:
    from mtbench.metrics.boundary_io import load_ground_truth, load_prediction

    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds500_minibench"
    if not root.is_dir() and os.environ.get("MTBENCH_SHARED"):
        root = Path(os.environ["MTBENCH_SHARED"]) / "data" / "bsds500_minibench"
    if not root.is_dir():
        return None
    ids = sorted(p.stem for p in (root / "png").glob("*.png"))
    preds = [load_prediction(root / "png", i) for i in ids]
    return preds, [load_ground_truth(root / "groundTruth", i, labels=False).maps for i in ids]


def cpu_seconds(fn, preds, gts, repeats: int) -> tuple[float, list[np.ndarray]]:
    best, out = float("inf"), []
    for _ in range(repeats):
        t0 = time.process_time()
        out = [fn(p, g) for p, g in zip(preds, gts)]
        best = min(best, (time.process_time() - t0) / len(preds))
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=1, help="best of N runs (default 1)")
    ap.add_argument("--skip-previous", action="store_true", help="time the current implementation only")
    args = ap.parse_args()
    cases = []
    pred, gt = synthetic_nyud()
    for nms in (True, False):
        cases.append((f"synthetic NYUD 425x560, 101 thr, NMS {'on' if nms else 'off'}", [pred], [[gt]],
                      hed_thresholds(), 0.011, nms))
    mb = minibench()
    if mb is None:
        print("BSDS mini-bench not found; skipped")
    else:
        for n in (5, 99):
            cases.append((f"BSDS mini-bench, 321x481, {n} thr, no NMS", *mb, uniform_thresholds(n), 0.0075, False))
    width = max(len(c[0]) for c in cases)
    print(f"{'case':<{width}}  {'now s/img':>9}  {'pairs s/img':>11}  {'00f0945 s/img':>13}  "
          f"{'vs pairs':>8}  {'vs 00f0945':>10}  counts")
    now_fn, pairs_fn = evaluate_with(match_count), evaluate_with(pairs_count)
    for name, preds, gts, thr, md, nms in cases:
        now, c_now = cpu_seconds(lambda p, g: now_fn(p, g, thr, md, nms), preds, gts, args.repeats)
        if args.skip_previous:
            print(f"{name:<{width}}  {now:9.3f}")
            continue
        pairs, c_pairs = cpu_seconds(lambda p, g: pairs_fn(p, g, thr, md, nms), preds, gts, args.repeats)
        before, c_before = cpu_seconds(lambda p, g: previous_evaluate_image(p, g, thr, md, nms), preds, gts, args.repeats)
        same = all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(c_now, c_before, c_pairs))
        print(f"{name:<{width}}  {now:9.3f}  {pairs:11.3f}  {before:13.3f}  {pairs / now:7.1f}x  {before / now:9.1f}x  "
              f"{'identical' if same else 'DIFFER'}", flush=True)


if __name__ == "__main__":
    main()
