"""The NYUv2 / Cityscapes tasks of the optimisation literature (MTAN, LibMTL, CAGrad, Nash-MTL, FAMO).

Their losses and metrics are not the dense-prediction benchmark's (depth L1 but scored by absolute/relative
error, normals trained with 1 − cos, scored over every metric), so they are tasks of their own, named after the
convention: ``semseg_libmtl``, ``depth_libmtl``, ``normals_libmtl``. Losses are LibMTL ``examples/nyu/utils.py``
(``SegLoss``, ``DepthLoss``, ``NormalLoss``), equal to MTAN's ``model_fit``; metrics in
:mod:`mtbench.metrics.libmtl`. Each task lists the metrics the setting's Δm averages (``delta_metrics``): every
metric of the papers' tables. Equal loss weights (LibMTL's ``EW``; the weighting axis changes them).
"""
from __future__ import annotations

import torch

from mtbench.metrics.libmtl import LibMTLDepth, LibMTLNormals, LibMTLSegmentation, normalize
from mtbench.registry import register_task
from mtbench.task import Task
from tasks._labels import ce_loss, class_histogram, majority_prediction


class SemsegLibMTL(Task):
    name = "semseg_libmtl"
    primary_metric = "mIoU"
    delta_metrics = ("mIoU", "pixAcc")
    weights = {"libmtl": 1.0}

    def out_channels(self, info):
        return info.num_classes[self.name]

    def loss(self, logits, target):
        """``nn.CrossEntropyLoss(ignore_index=-1)``: the mean over labelled pixels (−1 is our 255)."""
        return ce_loss(logits, target)

    def postprocess(self, logits):
        return logits.argmax(dim=1)

    @classmethod
    def evaluator_class(cls):
        return LibMTLSegmentation

    def evaluator(self, info, eval_cfg):
        return LibMTLSegmentation(info.num_classes[self.name])

    def prior_stats(self, target, info):
        return class_histogram(target, info.num_classes[self.name])

    def prior_prediction(self, stats, like):
        return majority_prediction(stats, like)


class DepthLibMTL(Task):
    name = "depth_libmtl"
    primary_metric = "abs_err"
    delta_metrics = ("abs_err", "rel_err")
    weights = {"libmtl": 1.0}

    def out_channels(self, info):
        return 1

    def loss(self, logits, target):
        """``DepthLoss``: Σ|p − g| over pixels with g ≠ 0 / their number; raw output, no activation."""
        pred = logits[:, 0].float()
        valid = target != 0
        return ((pred - target).abs() * valid).sum() / valid.sum().clamp(min=1)

    def postprocess(self, logits):
        return logits[:, 0].float()

    @classmethod
    def evaluator_class(cls):
        return LibMTLDepth

    def evaluator(self, info, eval_cfg):
        return LibMTLDepth()

    def prior_stats(self, target, info):
        valid = target != 0
        return torch.stack([(target * valid).sum().double(), valid.sum().double()])

    def prior_prediction(self, stats, like):
        return torch.full(like.shape, float(stats[0] / stats[1].clamp(min=1)), device=like.device)


def valid_normals(target: torch.Tensor) -> torch.Tensor:
    """LibMTL's / MTAN's mask: the target's components do not sum to 0 (B,H,W)."""
    return target.sum(dim=1) != 0


class NormalsLibMTL(Task):
    name = "normals_libmtl"
    primary_metric = "mean"
    delta_metrics = ("mean", "median", "a11.25", "a22.5", "a30")
    weights = {"libmtl": 1.0}

    def out_channels(self, info):
        return 3

    def loss(self, logits, target):
        """``NormalLoss``: 1 − Σ_valid (p̂ · g) / n_valid, p̂ = p / ‖p‖."""
        pred = normalize(logits.float())
        valid = valid_normals(target).unsqueeze(1)
        return 1 - (pred * target * valid).sum() / valid.sum().clamp(min=1)

    def postprocess(self, logits):
        return normalize(logits.float())

    @classmethod
    def evaluator_class(cls):
        return LibMTLNormals

    def evaluator(self, info, eval_cfg):
        return LibMTLNormals()

    def prior_stats(self, target, info):
        valid = valid_normals(target).unsqueeze(1)
        return (target * valid).sum(dim=(0, 2, 3)).double()

    def prior_prediction(self, stats, like):
        mean = (stats / stats.norm().clamp(min=1e-12)).float().to(like.device)
        return mean.view(1, 3, 1, 1).expand(like.shape[0], 3, *like.shape[2:]).contiguous()


register_task("semseg_libmtl")(SemsegLibMTL())
register_task("depth_libmtl")(DepthLibMTL())
register_task("normals_libmtl")(NormalsLibMTL())
