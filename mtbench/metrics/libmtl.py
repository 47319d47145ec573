"""The metrics of the optimisation literature's NYUv2 / Cityscapes tables, as LibMTL computes them.

Sources: LibMTL ``examples/nyu/utils.py`` (``SegMetric``, ``DepthMetric``, ``NormalMetric``; Cityscapes imports the
same file), from MTAN ``im2im_pred/utils.py`` (``ConfMatrix``, ``depth_error``, ``normal_error``), which CAGrad and
Nash-MTL copy. Averaging, the one place the codes differ:

- semseg: every code pools one confusion matrix over the split (MTAN's "new formula"): IoU_c = TP/(TP+FP+FN),
  mIoU = mean over the C classes, pixAcc = ΣTP / #labelled pixels; only ``0 <= gt < C`` counts (−1 / 255 ignored).
- depth: abs_err = Σ|p−g| / N and rel_err = Σ(|p−g|/g) / N over pixels with g ≠ 0. LibMTL weights each batch's
  mean by its number of valid pixels (``self.bs.append(pred.size()[0])`` after ``masked_select``), which is
  exactly pooling over the split — what we do. MTAN / CAGrad / Nash-MTL instead average the per-batch means with
  equal weights (so their numbers depend on the batch size); we do not copy that.
- normals: the angle acos(clamp(p̂·g, −1, 1)) in degrees, p̂ = p/‖p‖, over pixels whose target components do not
  sum to 0 (their mask, ``sum(gt, dim=1) != 0``); mean, median and the fraction < 11.25 / 22.5 / 30 pooled over
  every valid pixel of the split (LibMTL concatenates all errors; MTAN averages per batch).

Values are reported in % for mIoU, pixAcc and the three fractions (the papers' tables; LibMTL prints fractions):
Δm is a ratio, so the scale does not change it. One divergence: a class absent from both the targets and the
predictions of the whole split has IoU 0/0; LibMTL's ``torch.mean`` then returns NaN, we leave the class out of the
mean (never the case on the real 654 / 500 validation images, where every class occurs). The normals' median comes
from the on-device histogram of :class:`~mtbench.metrics.normals.NormalsEvaluator` (within 1e-3°), the angles are
computed in float64 (the release's float32 acos is up to ~0.02° off near 0°).
"""
from __future__ import annotations

import torch

from mtbench.metrics.base import Evaluator
from mtbench.metrics.normals import NormalsEvaluator


class LibMTLSegmentation(Evaluator):
    higher_is_better = {"mIoU": True, "pixAcc": True}

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.int64))  # rows: target

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        self._to(pred.device)
        n = self.num_classes
        p, t = pred.reshape(-1).long(), target.to(pred.device).reshape(-1).long()
        keep = (t >= 0) & (t < n)
        cell = torch.where(keep, t * n + p.clamp(0, n - 1), n * n)  # ignored pixels go to a dropped bin
        counts = torch.zeros(n * n + 1, dtype=torch.int64, device=p.device)
        counts.index_add_(0, cell, torch.ones_like(cell))
        self.confusion += counts[:-1].view(n, n)

    def compute(self) -> dict[str, float]:
        h = self.confusion.double().cpu()
        tp = h.diagonal()
        union = h.sum(0) + h.sum(1) - tp
        iou = tp[union > 0] / union[union > 0]
        total = float(h.sum())
        return {"mIoU": 100 * float(iou.mean()) if len(iou) else float("nan"),
                "pixAcc": 100 * float(tp.sum()) / total if total else float("nan")}


class LibMTLDepth(Evaluator):
    higher_is_better = {"abs_err": False, "rel_err": False}

    def __init__(self) -> None:
        super().__init__()
        self.add_state("n_valid", torch.zeros((), dtype=torch.int64))
        self.add_state("sums", torch.zeros(2, dtype=torch.float64))  # Σ|p−g|, Σ|p−g|/g

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        self._to(pred.device)
        g = target.to(pred.device).double()
        valid = g != 0
        err = (pred.double() - g).abs()
        g_safe = torch.where(valid, g, 1.0)
        self.sums += torch.stack([(err * valid).sum(), (err / g_safe * valid).sum()])
        self.n_valid += valid.sum()

    def compute(self) -> dict[str, float]:
        n = int(self.n_valid)
        if n == 0:
            return {k: float("nan") for k in self.higher_is_better}
        abs_err, rel_err = (float(s) / n for s in self.sums.cpu())
        return {"abs_err": abs_err, "rel_err": rel_err}


class LibMTLNormals(NormalsEvaluator):
    higher_is_better = {"mean": False, "median": False, "a11.25": True, "a22.5": True, "a30": True}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
            raise ValueError(f"expected pred and target (B,3,H,W), got {tuple(pred.shape)} and {tuple(target.shape)}")
        self._to(pred.device)
        g = target.to(pred.device).double()
        valid = g.sum(dim=1) != 0
        p = pred.double()
        p = p / p.norm(p=2, dim=1, keepdim=True)
        angle = torch.rad2deg(torch.acos((p * g).sum(dim=1).clamp(-1, 1)))
        self._add(angle, valid)

    def compute(self) -> dict[str, float]:
        out = super().compute()
        return {k: out[k] for k in self.higher_is_better}


def normalize(x: torch.Tensor) -> torch.Tensor:
    """p / ‖p‖ over channels, as LibMTL's NormalLoss / NormalMetric (no epsilon)."""
    return x / torch.norm(x, p=2, dim=1, keepdim=True)


__all__ = ["LibMTLDepth", "LibMTLNormals", "LibMTLSegmentation", "normalize"]
