"""Seconds per image of the boundary evaluator, single process.

    python benchmarks/boundary_speed.py [--repeats 3]

Cases: the BSDS mini-bench under its own protocol (5 thresholds, no NMS; skipped if the data is
absent), and a synthetic NYUD-size image (425 x 560, maxDist 0.011, SEISM's 101 thresholds) with
and without NMS. The synthetic prediction is a blurred, 1-px-shifted copy of a Voronoi boundary
map plus textured noise, i.e. thick soft ridges like a network output. Dataset time is about
seconds/image x images / workers (the per-image work is independent).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtbench.metrics.boundary import evaluate_image, hed_thresholds, uniform_thresholds  # noqa: E402


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
    return np.round(soft * 255).astype(np.uint8), gt


def minibench() -> tuple[list[np.ndarray], list[list[np.ndarray]]] | None:
    from PIL import Image

    from mtbench.cli.eval_boundary import load_ground_truth

    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds500_minibench"
    if not root.is_dir() and os.environ.get("MTBENCH_SHARED"):
        root = Path(os.environ["MTBENCH_SHARED"]) / "data" / "bsds500_minibench"
    if not root.is_dir():
        return None
    ids = sorted(p.stem for p in (root / "png").glob("*.png"))
    preds = [np.asarray(Image.open(root / "png" / f"{i}.png")) for i in ids]
    return preds, [load_ground_truth(root / "groundTruth", i, "bsds") for i in ids]


def time_case(preds, gts, repeats: int, **kw) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p, g in zip(preds, gts):
            evaluate_image(p, g, **kw)
        best = min(best, (time.perf_counter() - t0) / len(preds))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="best of N runs (default 3)")
    args = ap.parse_args()
    rows = []
    mb = minibench()
    if mb is not None:
        s = time_case(*mb, args.repeats, thresholds=uniform_thresholds(5), max_dist=0.0075, nms=False)
        rows.append(("BSDS mini-bench, 321x481, 5 thr, no NMS", s))
        s = time_case(*mb, args.repeats, thresholds=uniform_thresholds(99), max_dist=0.0075, nms=False)
        rows.append(("BSDS mini-bench, 321x481, 99 thr, no NMS", s))
    else:
        print("BSDS mini-bench not found; skipped")
    pred, gt = synthetic_nyud()
    for nms in (True, False):
        s = time_case([pred], [[gt]], args.repeats, thresholds=hed_thresholds(), max_dist=0.011, nms=nms)
        rows.append((f"synthetic NYUD 425x560, 101 thr, NMS {'on' if nms else 'off'}", s))
    width = max(len(r[0]) for r in rows)
    for name, s in rows:
        print(f"{name:<{width}}  {s:7.3f} s/image")


if __name__ == "__main__":
    main()
