"""Saliency: two published metrics under distinct names, both max-over-thresholds, in %.

``maxF`` — InvPT / ATRC / MQTransformer: InvPT ``InvPT/evaluation/eval_sal.py::SaliencyMeter``
(built with ``threshold_step=0.05, beta_squared=0.3`` in ``code/evaluation/evaluate_utils.py``) and
ATRC ``src/data/metrics.py::MaxF``. Thresholds 0.05, 0.10, …, 0.95; a pixel is positive when
``prob >= t``; TP, predicted and actual positives are pooled over all non-ignored pixels of the
dataset; P = TP/PP, R = TP/AP, F = (1+β²)PR / (β²P + R) with no epsilon, NaN (0/0) → 0; max over
thresholds. Both references apply ``torch.sigmoid`` to what they receive: right in ATRC, which
passes logits, but InvPT passes ``softmax(...)[:, 1]`` (a probability) so it is squashed twice and
only sigmoid(p) ≥ t matters, i.e. effective thresholds p ≥ logit(t) ∈ {≤0, 0.20, 0.41, 0.62,
0.85} (every t ≤ 0.5 marks all pixels positive, t ≥ 0.75 none). We apply no sigmoid: the
thresholds act on the probability itself, as the papers describe. Thresholds are the float32
values nearest to k/20 (InvPT's float32 ``arange`` gives 0.59999996 for 0.6: one ulp apart).

``mIoU_mtinet`` — MTI-Net ``evaluation/eval_sal.py::SaliencyMeter`` (Multi-Task-Learning-PyTorch):
thresholds ``np.linspace(0.2, 0.9, 15)``, positive when ``prob > t`` (strict), per-image Jaccard
(``evaluation/jaccard.py``; an image where neither GT nor prediction has a positive pixel scores 1),
mean over images per threshold, max over thresholds. Differences, deliberate: pixels labelled 255
are ignored (MTI-Net's ``gt.astype(bool)`` would count them as salient; its eval images have no
padding), and an image with no labelled pixel at all is skipped instead of scoring 1. MTI-Net's own
"maxF" (β² = 1 on per-image-averaged P and R) is a different number and is not reported.
"""
from __future__ import annotations

import torch

from mtbench.data.base import IGNORE
from mtbench.metrics.base import Evaluator

BETA_SQUARED = 0.3
F_THRESHOLDS = (torch.arange(1, 20, dtype=torch.float64) / 20).float()  # 0.05 … 0.95
IOU_THRESHOLDS = torch.linspace(0.2, 0.9, 15, dtype=torch.float64).float()  # == np.linspace(0.2, 0.9, 15)


def _positives_per_threshold(passed: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor,
                             n_thresholds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the valid pixels predicted positive at each threshold, (B, 2, T): [:, 0] all of
    them, [:, 1] those whose GT is positive; and the raw histogram (B, 2, T+1) over (GT, passed).
    ``passed`` = how many thresholds a pixel clears, so it is positive at threshold j iff
    passed > j: one histogram and a reversed cumsum, no loop over thresholds."""
    b, m = passed.shape[0], n_thresholds + 1
    image = torch.arange(b, device=passed.device).view(b, 1)
    cell = (image * 2 + positive.long()) * m + passed
    cell = torch.where(valid, cell, b * 2 * m).reshape(-1)  # ignored pixels: a dropped bin
    hist = torch.zeros(b * 2 * m + 1, dtype=torch.int64, device=passed.device)
    hist.index_add_(0, cell, torch.ones_like(cell))  # not torch.bincount: it syncs on CUDA
    hist = hist[:-1].view(b, 2, m)
    at_least = hist.flip(-1).cumsum(-1).flip(-1)  # [..., j] = #pixels with passed ≥ j
    above = at_least[..., 1:]  # passed > j for j = 0 … T−1
    return torch.stack([above.sum(1), above[:, 1]], dim=1), hist


class SaliencyEvaluator(Evaluator):
    higher_is_better = {"maxF": True, "mIoU_mtinet": True}
    units = {"maxF": "%", "mIoU_mtinet": "%"}

    def __init__(self, ignore_index: int = IGNORE) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        nf, ni = len(F_THRESHOLDS), len(IOU_THRESHOLDS)
        self.add_state("n_valid", torch.zeros((), dtype=torch.int64))
        self.add_state("true_pos", torch.zeros(nf, dtype=torch.int64))  # maxF, pooled
        self.add_state("pred_pos", torch.zeros(nf, dtype=torch.int64))
        self.add_state("actual_pos", torch.zeros((), dtype=torch.int64))
        self.add_state("iou_sum", torch.zeros(ni, dtype=torch.float64))  # Σ over images of IoU
        self.add_state("n_images", torch.zeros((), dtype=torch.int64))
        self._thresholds = (F_THRESHOLDS, IOU_THRESHOLDS)  # moved to the device once, not per batch

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        self._to(pred.device)
        if self._thresholds[0].device != pred.device:  # a blocking H2D copy would sync every batch
            self._thresholds = tuple(t.to(pred.device) for t in self._thresholds)
        f_thresholds, iou_thresholds = self._thresholds
        b = pred.shape[0]
        p = pred.float().reshape(b, -1)
        t = target.to(pred.device).reshape(b, -1)
        valid = t != self.ignore_index
        positive = (t == 1) & valid

        # maxF: positive iff p >= t_j  →  passed = #{j : t_j <= p}
        passed = torch.bucketize(p, f_thresholds, right=True)
        counts, hist = _positives_per_threshold(passed, positive, valid, len(f_thresholds))
        self.pred_pos += counts[:, 0].sum(0)
        self.true_pos += counts[:, 1].sum(0)
        self.actual_pos += hist[:, 1].sum()
        n_valid_img = hist.sum((1, 2))
        self.n_valid += n_valid_img.sum()

        # mIoU_mtinet: positive iff p > t_j  →  passed = #{j : t_j < p}; per-image IoU
        passed = torch.bucketize(p, iou_thresholds, right=False)
        counts, hist = _positives_per_threshold(passed, positive, valid, len(iou_thresholds))
        tp = counts[:, 1].double()
        union = counts[:, 0].double() + hist[:, 1].sum(-1, keepdim=True).double() - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), 1.0)  # empty union scores 1 (MTI-Net)
        has_labels = (n_valid_img > 0).view(b, 1)
        self.iou_sum += (iou * has_labels).sum(0)
        self.n_images += has_labels.sum()

    def compute(self) -> dict[str, float]:
        if int(self.n_valid) == 0:
            return {k: float("nan") for k in self.higher_is_better}
        tp, pp, ap = (s.double().cpu() for s in (self.true_pos, self.pred_pos, self.actual_pos))
        precision, recall = tp / pp, tp / ap
        f = (1 + BETA_SQUARED) * precision * recall / (BETA_SQUARED * precision + recall)
        f = torch.where(f.isnan(), 0.0, f)  # 0/0 (no predicted or no actual positive) → 0
        miou = self.iou_sum.cpu() / int(self.n_images)
        return {"maxF": 100 * float(f.max()), "mIoU_mtinet": 100 * float(miou.max())}
