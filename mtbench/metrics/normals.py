"""Surface normals: angular error pooled over every valid pixel of the dataset.

Reference: InvPT ``code/evaluation/eval_normals.py::eval_normals`` (from MTI-Net / ASTMT) collects
the per-pixel angle of *all* valid pixels of the dataset and reports mean, median (np.median),
rmse = sqrt(mean(angle²)) and % of pixels with angle < 11.25 / 22.5 / 30 (strict). It computes
the angle as acos(clip(p̂·ĝ, −1, 1)) after normalising with ``/ (‖v‖ + 1e-12)``. The online meters
(InvPT and ATRC ``NormalsMeter`` / ``MeanErrorInAngle``, which report only the mean) use
2·atan2(‖p̂−ĝ‖, ‖p̂+ĝ‖). We use atan2(‖p×g‖, p·g): the same angle, accurate everywhere, whereas
acos loses ~0.03° near 0° in float32. atan2 is scale-invariant, so normalising both vectors is
implicit; a zero prediction scores 90° (what the references' normalise-to-zero gives).

Valid pixels: no target channel equal to 255 and a non-zero target vector (ATRC / InvPT masks
``(gt != 255).all(dim=1)``; MTI-Net's offline code masks zero vectors; we apply both, as the
normals loss does).

The median comes from an on-device histogram with ``hist_bins_per_degree`` bins per degree over
[0°, 180°]. Each of the (one or two) middle order statistics is placed inside its bin by linear
interpolation over the bin's count, so the reported median differs from np.median of the same
angles by less than one bin width (1e-3° by default). Every other metric is exact.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from mtbench.data.base import IGNORE
from mtbench.metrics.base import Evaluator

_WITHIN = (11.25, 22.5, 30.0)


class NormalsEvaluator(Evaluator):
    higher_is_better = {"mean": False, "median": False, "rmse": False,
                        "a11.25": True, "a22.5": True, "a30": True}
    units = {"mean": "°", "median": "°", "rmse": "°", "a11.25": "%", "a22.5": "%", "a30": "%"}

    def __init__(self, hist_bins_per_degree: int = 1000) -> None:
        super().__init__()
        self.bins_per_degree = int(hist_bins_per_degree)
        self.n_bins = 180 * self.bins_per_degree
        self.add_state("n_valid", torch.zeros((), dtype=torch.int64))
        self.add_state("sum_angle", torch.zeros((), dtype=torch.float64))
        self.add_state("sum_sq_angle", torch.zeros((), dtype=torch.float64))
        self.add_state("n_within", torch.zeros(len(_WITHIN), dtype=torch.int64))
        self.add_state("hist", torch.zeros(self.n_bins, dtype=torch.int64))

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
            raise ValueError(f"expected pred and target (B,3,H,W), "
                             f"got {tuple(pred.shape)} and {tuple(target.shape)}")
        self._to(pred.device)
        target = target.to(pred.device)
        valid = (target != IGNORE).all(dim=1) & (target != 0).any(dim=1)
        p, g = pred.double(), target.double()
        cross = torch.linalg.cross(p, g, dim=1).norm(dim=1)
        angle = torch.rad2deg(torch.atan2(cross, (p * g).sum(dim=1)))
        angle = torch.where((p != 0).any(dim=1), angle, 90.0)
        self._add(angle, valid)

    def _add(self, angle: torch.Tensor, valid: torch.Tensor) -> None:
        """Pool the per-pixel angles (degrees, float64) of the pixels ``valid`` marks (same shape)."""
        angle = torch.where(valid, angle, 0.0).reshape(-1)
        valid = valid.reshape(-1)
        self.n_valid += valid.sum()
        self.sum_angle += angle.sum()
        self.sum_sq_angle += (angle * angle).sum()
        within = torch.stack([angle < limit for limit in _WITHIN])  # Python scalars: no H2D copy
        self.n_within += (within & valid).sum(1)
        # angle ∈ [0, 180]; 180 itself joins the last bin. Invalid pixels go to a dropped bin.
        # (index_add_, not torch.bincount, which syncs with the host on CUDA.)
        b = (angle * self.bins_per_degree).long().clamp(0, self.n_bins - 1)
        b = torch.where(valid, b, self.n_bins)
        counts = torch.zeros(self.n_bins + 1, dtype=torch.int64, device=angle.device)
        counts.index_add_(0, b, torch.ones_like(b))
        self.hist += counts[:-1]

    def _order_statistic(self, hist: np.ndarray, cum: np.ndarray, rank: int) -> float:
        """The rank-th smallest angle (1-based), interpolated within its histogram bin."""
        k = int(np.searchsorted(cum, rank, side="left"))  # first bin whose cumulative count ≥ rank
        before = cum[k] - hist[k]
        return (k + (rank - before - 0.5) / hist[k]) / self.bins_per_degree

    def compute(self) -> dict[str, float]:
        n = int(self.n_valid)
        if n == 0:
            return {k: float("nan") for k in self.higher_is_better}
        hist = self.hist.cpu().numpy()
        cum = np.cumsum(hist)
        # np.median: the middle order statistic, or the mean of the two middle ones for even n
        median = 0.5 * (self._order_statistic(hist, cum, (n + 1) // 2)
                        + self._order_statistic(hist, cum, n // 2 + 1))
        within = [100 * int(c) / n for c in self.n_within.cpu()]
        return {"mean": float(self.sum_angle) / n, "median": median,
                "rmse": math.sqrt(float(self.sum_sq_angle) / n),
                "a11.25": within[0], "a22.5": within[1], "a30": within[2]}
