"""Depth in metres: L1 on valid pixels (0 = invalid, one rule for loss and metric), RMSE."""
from __future__ import annotations

import torch

from mtbench.metrics.depth import DepthEvaluator
from mtbench.registry import register_task
from mtbench.task import Task, ratio_prediction


class Depth(Task):
    name = "depth"
    primary_metric = "rmse"
    prediction_kind = "depth"
    weights = {"nyud": 1.0, "pascal": 1.0}

    def valid(self, target):
        """Pixels with a depth: g > 0."""
        return target > 0

    def out_channels(self, info):
        return 1

    def loss(self, logits, target):
        """ATRC ``L1Loss``: Σ|pred − gt| over valid pixels / max(n_valid, 1); raw output, no activation."""
        pred = logits[:, 0].float()
        valid = self.valid(target)
        n_valid = valid.sum().clamp(min=1)
        return ((pred - target).abs() * valid).sum() / n_valid

    def postprocess(self, logits):
        return logits[:, 0].float()

    @classmethod
    def evaluator_class(cls):
        return DepthEvaluator

    def evaluator(self, info, eval_cfg):
        return DepthEvaluator()

    def prior_stats(self, target, info):
        valid = self.valid(target)
        return torch.stack([(target * valid).sum().double(), valid.sum().double()])

    def prior_prediction(self, stats, like):
        return ratio_prediction(stats, like)


register_task("depth")(Depth())
