"""Depth: errors pooled over every valid pixel of the dataset (InvPT / ATRC / MTI-Net convention).

Reference: InvPT ``code/evaluation/eval_depth.py`` (``eval_depth`` and ``DepthMeter``, from MTI-Net
and ASTMT): per-pixel squared errors are summed over the dataset and divided by the number of
valid pixels, rmse = sqrt(Σ(p − g)² / N), log_rmse = sqrt(Σ(ln g − ln p)² / N),
abs_rel = Σ|p − g|/g / N, sq_rel = Σ(p − g)²/g / N. Before *all* of them the prediction is
clamped as ``pred[pred <= 0] = 1e-9`` (for the log; rmse sees the clamped value too, and InvPT's
``get_output`` already clamps to ≥ 0). ATRC's ``RMSE`` metric is the same sum without the clamp
(its model clamps to ≥ 0 before scoring), so both agree to ~1e-9 m.

Valid pixels are ``target > 0`` (mtbench's contract: 0 = invalid; same rule as the depth loss).
This follows InvPT's offline ``eval_depth`` (``label != 0``); its online ``DepthMeter`` instead
masks ``gt != 255`` and scores zero-depth pixels against 1e-9, which we do not copy.
δ_k = % of valid pixels with max(p/g, g/p) < 1.25^k (strict, Eigen et al.). Units: metres for
rmse, natural log for log_rmse, fractions for abs_rel / sq_rel, % for δ.
"""
from __future__ import annotations

import math

import torch

from mtbench.metrics.base import Evaluator

_CLAMP = 1e-9  # the reference's floor for non-positive predictions


class DepthEvaluator(Evaluator):
    higher_is_better = {"rmse": False, "log_rmse": False, "abs_rel": False, "sq_rel": False,
                        "delta1": True, "delta2": True, "delta3": True}
    units = {"rmse": "m", "log_rmse": "", "abs_rel": "", "sq_rel": "m", "delta1": "%", "delta2": "%", "delta3": "%"}

    def __init__(self) -> None:
        super().__init__()
        self.add_state("n_valid", torch.zeros((), dtype=torch.int64))
        # Σ (p−g)², Σ (ln g − ln p)², Σ |p−g|/g, Σ (p−g)²/g over valid pixels
        self.add_state("sums", torch.zeros(4, dtype=torch.float64))
        self.add_state("n_within", torch.zeros(3, dtype=torch.int64))  # δ < 1.25, 1.25², 1.25³

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        self._to(pred.device)
        g = target.to(pred.device).double()
        valid = g > 0
        p = pred.double()
        p = torch.where(p <= 0, _CLAMP, p)  # NaN predictions stay NaN and show up in the result
        g = torch.where(valid, g, 1.0)  # invalid pixels get harmless values, then weight 0
        p = torch.where(valid, p, 1.0)
        d = p - g
        terms = torch.stack([d * d, (g.log() - p.log()) ** 2, d.abs() / g, d * d / g])
        self.sums += (terms * valid).flatten(1).sum(1)
        ratio = torch.maximum(p / g, g / p)
        within = torch.stack([ratio < 1.25 ** k for k in (1, 2, 3)])  # Python scalars: no H2D copy
        self.n_within += (within & valid).flatten(1).sum(1)
        self.n_valid += valid.sum()

    def compute(self) -> dict[str, float]:
        n = int(self.n_valid)
        if n == 0:
            return {k: float("nan") for k in self.higher_is_better}
        sq, sq_log, abs_rel, sq_rel = (float(s) / n for s in self.sums.cpu())
        d1, d2, d3 = (100 * int(c) / n for c in self.n_within.cpu())
        return {"rmse": math.sqrt(sq), "log_rmse": math.sqrt(sq_log), "abs_rel": abs_rel,
                "sq_rel": sq_rel, "delta1": d1, "delta2": d2, "delta3": d3}
