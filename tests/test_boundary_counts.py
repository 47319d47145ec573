"""The fast boundary evaluator returns exactly the per-threshold counts of the implementations it
replaced: commit 00f0945 (skimage thinning and one LAPJVsp solve per threshold and annotator) for
cases A-E, and commit fcd3c9f (one annotator's pair count from LAPJVsp per threshold, in its square
form for large components) for cases F-I, computed before one annotator's counts moved to the
incremental matching of boundary_sweep.

tests/data/boundary_counts_{before,fcd3c9f}.npz hold, for each case below, the (T, 4) counts that
commit computed and the first 8 bytes of the SHA-256 of the generated inputs (so a change in the
input generator is reported as such, not as a change of counts). Case C has three annotators: there
a predicted pixel counts when it matches any of them, so the counts also pin down which of several
equally cheap matchings is chosen, not only its size.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from mtbench.metrics.boundary import evaluate_image, hed_thresholds, uniform_thresholds

DATA = Path(__file__).parent / "data"

# name: (seed, h, w, Voronoi cells, annotators, ignore band), thresholds, NMS, maxDist
CASES = {
    "A": ((0, 425, 560, 40, 1, False), "hed", True, 0.011),
    "B": ((1, 425, 560, 60, 1, True), "hed", True, 0.011),
    "C": ((2, 200, 260, 12, 3, False), 99, False, 0.0075),
    "D": ((3, 160, 200, 10, 2, True), 21, True, 0.011),
    "E": ((4, 240, 320, 25, 1, False), "hed", False, 0.011),
    "F": ((5, 425, 560, 30, 1, False), "hed", True, 0.011),
    "G": ((6, 425, 560, 80, 1, False), "hed", True, 0.011),
    "H": ((7, 425, 560, 50, 1, True), 99, True, 0.0075),
    "I": ((8, 321, 481, 35, 1, False), "hed", False, 0.011),
}


def scene(seed: int, h: int, w: int, cells: int, annotators: int, ignore: bool):
    """A Voronoi boundary map, a blurred 1-px-shifted copy plus textured noise as the prediction,
    extra annotators as shifted copies, and optionally an ignore band in the top-left corner."""
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, [h, w], size=(cells, 2))
    yy, xx = np.mgrid[:h, :w]
    lab = np.argmin((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2, axis=-1)
    gt = ndi.maximum_filter(lab, 2) != ndi.minimum_filter(lab, 2)
    soft = ndi.gaussian_filter(np.roll(gt.astype(float), 1, axis=1), 2.0)
    noise = ndi.gaussian_filter(rng.random((h, w)), 3) * rng.random((h, w))
    pred = np.floor(np.clip(soft / soft.max() + 0.15 * noise, 0, 1) * 255).astype(np.uint8)
    gts = [gt] + [np.roll(gt, (k, -k), axis=(0, 1)) for k in range(1, annotators)]
    mask = None
    if ignore:
        mask = np.zeros((h, w), bool)
        mask[: h // 5, : w // 3] = True
    return pred, gts, mask


@pytest.mark.parametrize("name", sorted(CASES))
def test_counts_equal_previous_implementation(name):
    ref = np.load(DATA / ("boundary_counts_before.npz" if name in "ABCDE" else "boundary_counts_fcd3c9f.npz"))
    spec, thresholds, nms, max_dist = CASES[name]
    pred, gts, mask = scene(*spec)
    digest = hashlib.sha256(pred.tobytes() + b"".join(np.packbits(g).tobytes() for g in gts)).digest()[:8]
    assert digest == ref[f"{name}_input"].tobytes(), "the input generator changed; the stored counts no longer apply"
    thr = hed_thresholds() if thresholds == "hed" else uniform_thresholds(thresholds)
    counts = evaluate_image(pred, gts, thr, max_dist, nms=nms, ignore=mask)
    np.testing.assert_array_equal(counts, ref[name])
