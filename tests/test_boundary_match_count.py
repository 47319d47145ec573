"""One annotator's counts need only the number of pairs of the min-cost matching; large
components get it from LAPJVsp in the square form (boundary_match.match_count). Checked against
scipy's dense Hungarian solver (``linear_sum_assignment``, another algorithm) on the same
objective, with every multi-row component sent through the square form."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from mtbench.metrics import boundary_match as bm


def dense_pair_count(pred: np.ndarray, gt: np.ndarray, radius: float) -> int:
    """Rows: predicted pixels; columns: GT pixels + one private outlier column per row, at the
    integer weights of correspondPixels (rint(100 d) + 1, ceil(100 * 100 * radius) + 1)."""
    p, g = np.argwhere(pred), np.argwhere(gt)
    d = np.sqrt(((p[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    big = 1e12
    cost = np.where(d <= radius, np.rint(d * 100) + 1.0, big)
    ow = float(math.ceil(100 * radius * 100)) + 1.0
    out = np.full((len(p), len(p)), big)
    np.fill_diagonal(out, ow)
    r, c = linear_sum_assignment(np.concatenate([cost, out], axis=1))
    return int((c < len(g)).sum())


@pytest.mark.parametrize("seed", range(12))
def test_pair_count_equals_dense_solver(seed, monkeypatch):
    monkeypatch.setattr(bm, "SQUARE_ABOVE", 0)  # every multi-row component in the square form
    rng = np.random.default_rng(seed)
    h, w = 24, 30
    gt = np.zeros((h, w), bool)
    gt[rng.integers(0, h), :] = True  # a line, plus scattered pixels
    gt |= rng.random((h, w)) < 0.05
    pred = np.roll(gt, int(rng.integers(-2, 3)), axis=0) & (rng.random((h, w)) < 0.8)
    pred |= rng.random((h, w)) < [0.02, 0.15][seed % 2]  # more or fewer predicted than GT pixels
    radius = [1.5, 2.0, 3.2][seed % 3]  # integer offsets: many equal weights (ties)
    p = np.argwhere(pred)
    i, j, d = bm.candidate_pairs(p, gt, radius)
    order = np.lexsort((j, i))
    k = bm.match_count(i[order], j[order], d[order], len(p), gt.size, radius)
    m1, m2 = bm.match_pairs(i[order], j[order], d[order], len(p), gt.size, radius)
    assert k == dense_pair_count(pred, gt, radius) == int(m2.sum()) == int(m1.sum())
