"""One annotator's pair counts over a threshold sweep (boundary_sweep: one matching repaired as pixels
enter and leave) against solving every threshold on its own: the pair count and the optimal cost
of scipy's dense Hungarian solver (``linear_sum_assignment``, another algorithm) on the same
objective, and cases worked out by hand where the optimum leaves out a pair that a
maximum-cardinality matching would make."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from mtbench.metrics import boundary_image as bimg
from mtbench.metrics import boundary_match as bm
from mtbench.metrics.boundary_sweep import sweep_optima


def dense_optimum(pixels: np.ndarray, gt: np.ndarray, radius: float) -> tuple[int, int]:
    """(pairs, cost) by scipy's dense Hungarian solver. Rows: the predicted pixels (flat indices);
    columns: GT pixels + one private outlier column per row, at the integer weights of
    correspondPixels (rint(100 d) + 1, ceil(100 * 100 * radius) + 1)."""
    ow = math.ceil(100 * radius * 100) + 1
    p, g = np.stack(np.unravel_index(pixels, gt.shape), axis=1), np.argwhere(gt)
    if len(p) == 0 or len(g) == 0:
        return 0, ow * len(p)
    d = np.sqrt(((p[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    big = 1e12
    cost = np.where(d <= radius, np.rint(d * 100) + 1.0, big)
    out = np.full((len(p), len(p)), big)
    np.fill_diagonal(out, ow)
    full = np.concatenate([cost, out], axis=1)
    r, c = linear_sum_assignment(full)
    return int((c < len(g)).sum()), int(full[r, c].sum())


def sweep(maps: list[np.ndarray], gt: np.ndarray, radius: float) -> np.ndarray:
    """Pairs per map (flat indices, in threshold order) through the evaluator's one-annotator path."""
    return bimg._counts(maps, [gt], radius)[:, 0]


def optima_by_sweep(maps: list[np.ndarray], gt: np.ndarray, radius: float) -> list[tuple[int, int]]:
    """(pairs, cost) per map from boundary_sweep, run from the last map to the first."""
    union = np.unique(np.concatenate(maps))
    i, j, d = bm.candidate_pairs(np.stack(np.unravel_index(union, gt.shape), axis=1), gt, radius)
    w, ow = bm.integer_costs(d, radius)
    steps = [np.searchsorted(union, m) for m in maps[::-1]]
    pairs, cost = sweep_optima(steps, i, (np.cumsum(gt.ravel()) - 1)[j], w, union.size, int(gt.sum()), ow)
    return list(zip(pairs[::-1].tolist(), cost[::-1].tolist()))


@pytest.mark.parametrize("seed", range(16))
def test_sweep_equals_dense_solver_per_threshold(seed):
    rng = np.random.default_rng(seed)
    h, w = 28, 36
    gt = np.zeros((h, w), bool)
    gt[rng.integers(0, h), :] = True  # a line, a column, scattered pixels
    gt[:, rng.integers(0, w)] = True
    gt |= rng.random((h, w)) < 0.04
    soft = ndi.gaussian_filter(np.roll(gt.astype(float), int(rng.integers(-2, 3)), axis=1), 1.2)
    prob = soft / soft.max() + [0.2, 0.6][seed % 2] * rng.random((h, w))
    thr = np.linspace(0.05, 1.0, 24)
    radius = [1.5, 2.0, 3.2, 4.0][seed % 4]  # integer offsets: many equal weights (ties)
    # Thinned maps are not nested: pixels leave as well as enter along the sweep.
    maps = bimg._thinned_maps(prob, thr, strict=False, drop=None)
    expected = [dense_optimum(m, gt, radius) for m in maps]
    assert optima_by_sweep(maps, gt, radius) == expected
    assert sweep(maps, gt, radius).tolist() == [k for k, _ in expected]


def test_pixels_leave_along_the_sweep():
    """Non-nested sets (random subsets, so many paired pixels leave): same counts as per-threshold solves."""
    rng = np.random.default_rng(7)
    h, w = 20, 30
    gt = rng.random((h, w)) < 0.15
    maps = [np.flatnonzero(rng.random(h * w) < rng.uniform(0.05, 0.4)) for _ in range(30)]
    assert optima_by_sweep(maps, gt, 2.5) == [dense_optimum(m, gt, 2.5) for m in maps]


@pytest.mark.parametrize("length, pairs", [(120, 120), (200, 199)])
def test_shifted_line_leaves_one_pair_out(length, pairs):
    """GT: a line of ``length`` pixels; predicted: the same line one pixel further along. At radius
    1.5 the unpaired cost is 15001: pairing all pixels costs 101 each (distance 1), leaving the end
    pixel out costs 1 for each of the other pairs plus 15001. So all pair while 101 L < L - 1 +
    15001, i.e. L < 150, and one pair fewer beyond, although a pairing of every pixel exists."""
    h, w = 3, length + 2
    gt = np.zeros((h, w), bool)
    gt[1, :length] = True
    line = np.ravel_multi_index((np.ones(length, int), np.arange(1, length + 1)), (h, w))
    grown = [line[:n] for n in (1, length // 2, length - 1)]  # partial copies pair at distance 0
    maps = [line, *grown[::-1], line]  # thresholds ascending: the full line last and first
    assert bm.integer_costs(np.zeros(1), 1.5)[1] == 15001
    assert sweep(maps, gt, 1.5).tolist() == [pairs, length - 1, length // 2, 1, pairs]
    full = min(101 * length, length - 1 + 15001)
    assert optima_by_sweep(maps, gt, 1.5)[0] == dense_optimum(line, gt, 1.5) == (pairs, full)


def test_no_candidates_and_empty_maps():
    gt = np.zeros((10, 10), bool)
    gt[0, 0] = True
    maps = [np.array([99]), np.array([], dtype=np.int64), np.array([0, 99])]
    assert sweep(maps, gt, 1.5).tolist() == [0, 0, 1]
