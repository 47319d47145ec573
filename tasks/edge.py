"""Boundaries: class-balanced BCE with positive weight 0.95 (ATRC/InvPT), scored by odsF under an edge protocol."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mtbench.data.base import IGNORE
from mtbench.metrics.boundary import BoundaryEvaluator
from mtbench.metrics.boundary_protocol import DEFAULT_PROTOCOL
from mtbench.registry import register_task
from mtbench.task import Task, positive_stats, ratio_prediction

POS_WEIGHT = 0.95


class Edge(Task):
    name = "edge"
    primary_metric = "odsF"
    prediction_kind = "probability"
    weights = {"nyud": 50.0, "pascal": 50.0}
    saves_predictions = True

    def out_channels(self, info):
        return 1

    def loss(self, logits, target):
        """ATRC ``BalancedBinaryCrossEntropyLoss(pos_weight=0.95)``, which reduces to the mean
        over labelled pixels of w·y·(−log σ) + (1−w)·(1−y)·(−log(1−σ))."""
        x = logits[:, 0].float()
        valid = target != IGNORE
        y = torch.where(valid, target, torch.zeros_like(target)).float()
        per_pixel = POS_WEIGHT * y * F.softplus(-x) + (1 - POS_WEIGHT) * (1 - y) * F.softplus(x)
        return (per_pixel * valid).sum() / valid.sum().clamp(min=1)

    def postprocess(self, logits):
        return torch.sigmoid(logits[:, 0].float())

    @classmethod
    def evaluator_class(cls):
        return BoundaryEvaluator

    def evaluator(self, info, eval_cfg):
        """``eval.edge_protocol`` names the released evaluation reproduced (boundary_protocol);
        ``edge_thresholds`` / ``edge_nms`` override single details of it."""
        return BoundaryEvaluator(
            max_dist=info.edge_max_dist,
            protocol=eval_cfg.get("edge_protocol", DEFAULT_PROTOCOL),
            thresholds=eval_cfg.get("edge_thresholds"),
            nms=eval_cfg.get("edge_nms"),
            workers=eval_cfg.get("edge_workers"),
        )

    def prior_stats(self, target, info):
        return positive_stats(target)

    def prior_prediction(self, stats, like):
        return ratio_prediction(stats, like)


register_task("edge")(Edge())
