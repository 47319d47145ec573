"""Is a difference more than seed noise? Where both sides have at least two seeds: a 95 % t-interval on a
method's Δm over its seeds (the references' mean held fixed, as in the leaderboard), and Welch's two-sided
t-test (unequal variances; scipy.stats) on each task's primary metric against the single-task references and
against the baseline. Too few seeds: said so, never a number."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_SEEDS = 2
LEVEL = 0.95


def t_interval(values: list[float], level: float = LEVEL) -> tuple[float, float, float] | None:
    """(mean, low, high): mean ± t_{(1+level)/2, n−1} · s / √n; None with fewer than two values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size < MIN_SEEDS:
        return None
    half = float(stats.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return float(v.mean()), float(v.mean()) - half, float(v.mean()) + half


@dataclass
class Welch:
    t: float
    df: float
    p: float
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float


def welch(a: list[float], b: list[float]) -> Welch | None:
    """Welch's t-test of mean(a) vs mean(b), two-sided; None unless both have two values or more. Equal
    samples with no spread give t = 0, p = 1 (scipy would give NaN)."""
    a_ = np.asarray([x for x in a if x is not None and math.isfinite(x)], np.float64)
    b_ = np.asarray([x for x in b if x is not None and math.isfinite(x)], np.float64)
    if a_.size < MIN_SEEDS or b_.size < MIN_SEEDS:
        return None
    va, vb = a_.var(ddof=1) / a_.size, b_.var(ddof=1) / b_.size
    if va + vb == 0:
        same = a_.mean() == b_.mean()
        return Welch(0.0 if same else math.copysign(math.inf, a_.mean() - b_.mean()), float("nan"),
                     1.0 if same else 0.0, a_.size, b_.size, float(a_.mean()), float(b_.mean()))
    res = stats.ttest_ind(a_, b_, equal_var=False)
    df = (va + vb) ** 2 / (va ** 2 / (a_.size - 1) + vb ** 2 / (b_.size - 1))  # Welch–Satterthwaite
    return Welch(float(res.statistic), float(df), float(res.pvalue), a_.size, b_.size, float(a_.mean()),
                 float(b_.mean()))


def too_few(n_a: int, n_b: int, what_b: str) -> str:
    return f"too few seeds for a test ({n_a} vs {n_b} for {what_b}; needs ≥ {MIN_SEEDS} each)"
