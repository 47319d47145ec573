"""CPU seconds per image of the boundary evaluator, side by side with the implementations it
replaced, in one process; and a check that all give the same per-threshold counts.

    python benchmarks/boundary_speed.py [--repeats 1] [--skip-previous]

Columns: ``now``; ``fcd3c9f`` = the previous evaluator, loaded from git history (one annotator's
pair count from LAPJVsp per threshold, large components in its square form); ``pairs`` = that
evaluator with one annotator's counts from the full pair sets of ``match_pairs`` (rectangular
LAPJVsp on every component, the path several annotators still take); ``00f0945`` = the first fast
implementation, frozen below. ``now`` first pays numba's compile (or cache load) once per process,
printed on its own line and left out of the per-image times; forked evaluation workers inherit it.

Where the time went in fcd3c9f (cProfile, synthetic NYUD image, NMS, 2.8 s): 1.55 s in LAPJVsp on
the large components (69 square solves, the largest 6.7k GT x 13k predicted pixels), 0.6 s
building their graphs (components, ranks, CSR), 0.26 s thinning, the rest NMS and candidate
pairs. Now one annotator's counts come from one matching kept optimal over the whole sweep
(boundary_sweep): 14k pixels enter and 1k leave across the 101 thresholds of that image, each a
local shortest-path search (about 230k nodes settled, 3M edge relaxations in all), compiled by
numba. Cases: a synthetic NYUD-size image (425 x 560, maxDist 0.011, SEISM's 101 thresholds) with
and without NMS, and the BSDS mini-bench under its own protocol (5 and 99 thresholds, no NMS,
several annotators; skipped if the data is absent). The synthetic prediction is a blurred,
1-px-shifted copy of a Voronoi boundary map plus textured noise, i.e. thick soft ridges like a
network output. Times are process CPU seconds (time.process_time), best of --repeats; a dataset
costs about seconds/image x images, spread over the worker processes.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from skimage.morphology import thin as skimage_thin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtbench.metrics.boundary import evaluate_image, hed_thresholds, uniform_thresholds  # noqa: E402
from mtbench.metrics.boundary_match import candidate_pairs, max_dist_pixels  # noqa: E402
from mtbench.metrics.boundary_nms import structured_edge_nms  # noqa: E402
from mtbench.metrics.boundary_sweep import warm_up  # noqa: E402
from synthetic_edges import synthetic_nyud  # noqa: E402  (benchmarks/, on sys.path as the script's folder)

PREVIOUS = "fcd3c9f"


def module_at(commit: str, path: str, name: str, rename: dict[str, str]) -> ModuleType:
    """A module of this repository as it was at ``commit`` (git show), imports renamed by ``rename``."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], capture_output=True, text=True,
                         check=True).stdout
    for old, new in rename.items():
        src = src.replace(old, new)
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    sys.modules[name] = mod
    exec(compile(src, f"{commit}:{path}", "exec"), mod.__dict__)
    return mod


def previous_evaluators():
    """(fcd3c9f's evaluate_image, the same with one annotator's counts from match_pairs), or None
    outside a git checkout."""
    try:
        match = module_at(PREVIOUS, "mtbench/metrics/boundary_match.py", "prev_boundary_match", {})
        image = module_at(PREVIOUS, "mtbench/metrics/boundary_image.py", "prev_boundary_image",
                          {"mtbench.metrics.boundary_match": "prev_boundary_match"})
    except (OSError, subprocess.CalledProcessError):
        return None

    def pairs_count(i, j, d, n_pred, n_gt, radius) -> int:
        return int(match.match_pairs(i, j, d, n_pred, n_gt, radius)[1].sum())

    def with_pairs(*args, **kw):
        image.match_count = pairs_count
        try:
            return image.evaluate_image(*args, **kw)
        finally:
            image.match_count = match.match_count
    return image.evaluate_image, with_pairs


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
    t0 = time.process_time()
    warm_up()
    print(f"numba compile or cache load, once per process: {time.process_time() - t0:.2f} s CPU")
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
    previous = None if args.skip_previous else previous_evaluators()
    if previous is None and not args.skip_previous:
        print(f"no git history here: the {PREVIOUS} and pairs columns are skipped")
    width = max(len(c[0]) for c in cases)
    columns = ["now", PREVIOUS, "pairs", "00f0945"]
    print(f"{'case (CPU s/image)':<{width}}  " + "  ".join(f"{c:>7}" for c in columns) + "  "
          + "  ".join(f"{'vs ' + c:>10}" for c in columns[1:]) + "  counts")
    for name, preds, gts, thr, md, nms in cases:
        runs = {"now": lambda p, g: evaluate_image(p, g, thr, md, nms=nms)}
        if not args.skip_previous:
            if previous is not None:
                runs[PREVIOUS] = lambda p, g: previous[0](p, g, thr, md, nms=nms)
                runs["pairs"] = lambda p, g: previous[1](p, g, thr, md, nms=nms)
            runs["00f0945"] = lambda p, g: previous_evaluate_image(p, g, thr, md, nms)
        times, counts = {}, {}
        for col, fn in runs.items():
            times[col], counts[col] = cpu_seconds(fn, preds, gts, args.repeats)
        same = all(np.array_equal(a, b) for c in counts.values() for a, b in zip(counts["now"], c))
        cells = [f"{times[c]:7.2f}" if c in times else f"{'-':>7}" for c in columns]
        ratios = [f"{times[c] / times['now']:9.1f}x" if c in times else f"{'-':>10}" for c in columns[1:]]
        print(f"{name:<{width}}  " + "  ".join(cells) + "  " + "  ".join(ratios) + "  "
              + ("identical" if same else "DIFFER"), flush=True)


if __name__ == "__main__":
    main()
