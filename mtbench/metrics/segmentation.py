"""Semantic segmentation / human parts: dataset-pooled mIoU, the ATRC / InvPT / MTI-Net definition.

Reference: ``SemsegMeter`` / ``HumanPartsMeter`` in InvPT ``code/evaluation/eval_semseg.py`` and
``eval_human_parts.py`` (copied from MTI-Net and ASTMT) and ATRC ``src/data/metrics.py::MeanIoU``
(also MQTransformer's). All of them pool TP / FP / FN per class over every non-ignored pixel of the
dataset and take IoU_c = TP / max(TP + FP + FN, 1e-8): a class absent from both the ground truth
and the predictions gets IoU 0 and *still counts in the mean* (ATRC: NaN → 0, then mean).
"""
from __future__ import annotations

from typing import Sequence

import torch

from mtbench.data.base import IGNORE
from mtbench.metrics.base import Evaluator


class _PerClassKeys(dict):
    """``higher_is_better`` that also answers for the per-class keys ``IoU/<name>``, whose names
    depend on the dataset and so cannot be listed on the class."""

    def __missing__(self, key: str) -> bool:
        if isinstance(key, str) and key.startswith("IoU/"):
            return True
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (isinstance(key, str) and key.startswith("IoU/"))


class SegmentationEvaluator(Evaluator):
    """Confusion matrix over the dataset → ``mIoU``, ``pixAcc`` and ``IoU/<class>``, all in %.

    The matrix has one extra row and column, index ``num_classes``, that collects labels outside
    ``[0, num_classes)``: a predicted label out of range is a false negative for the true class
    and a false positive for none; a target label out of range (other than ``ignore_index``) is a
    false positive for the predicted class. That is exactly what the reference's per-class
    ``pred == c`` / ``gt == c`` comparisons do, with no host sync to check ranges.
    pixAcc = Σ TP / #non-ignored pixels (not in the references; the usual definition).
    """

    higher_is_better = _PerClassKeys(mIoU=True, pixAcc=True)
    units = {"mIoU": "%", "pixAcc": "%"}  # and every IoU/<class>: see mtbench.units

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 ignore_index: int = IGNORE) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        names = class_names if class_names is not None else range(num_classes)
        self.class_names = [str(n) for n in names]
        self.ignore_index = ignore_index
        k = num_classes + 1
        self.add_state("confusion", torch.zeros(k, k, dtype=torch.int64))  # rows: target, cols: prediction

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        self._to(pred.device)
        c, k = self.num_classes, self.num_classes + 1
        p = pred.reshape(-1).long()
        t = target.to(pred.device).reshape(-1).long()
        p = torch.where((p >= 0) & (p < c), p, c)
        cell = torch.where((t >= 0) & (t < c), t, c) * k + p
        cell = torch.where(t == self.ignore_index, k * k, cell)  # ignored pixels go to a dropped bin
        # torch.bincount would sync with the host on CUDA (it reads the max to size its output).
        counts = torch.zeros(k * k + 1, dtype=torch.int64, device=p.device)
        counts.index_add_(0, cell, torch.ones_like(cell))
        self.confusion += counts[:-1].view(k, k)

    def compute(self) -> dict[str, float]:
        c = self.num_classes
        cm = self.confusion.double().cpu()
        tp = cm.diagonal()[:c]
        fp = cm[:, :c].sum(0) - tp
        fn = cm[:c, :].sum(1) - tp
        iou = tp / (tp + fp + fn).clamp(min=1)  # integer counts: same as the reference's max(·, 1e-8)
        total = float(cm.sum())
        out = {"mIoU": 100 * float(iou.mean()),
               "pixAcc": 100 * float(tp.sum()) / total if total > 0 else float("nan")}
        out.update({f"IoU/{name}": 100 * float(v) for name, v in zip(self.class_names, iou)})
        return out
