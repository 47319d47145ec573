"""Surface normals: L1 between the L2-normalised prediction and the GT on valid pixels."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mtbench.data.base import IGNORE
from mtbench.metrics.normals import NormalsEvaluator
from mtbench.registry import register_task
from mtbench.task import Task


def valid_normals(target: torch.Tensor) -> torch.Tensor:
    """(B,H,W) mask: not ignore in every channel and not a zero vector (NYUD's 'no normal')."""
    return (target != IGNORE).all(dim=1) & (target.abs().sum(dim=1) > 0)


class Normals(Task):
    name = "normals"
    primary_metric = "mean"
    prediction_kind = "normals"
    weights = {"nyud": 10.0, "pascal": 10.0}

    def valid(self, target):
        return valid_normals(target)

    def out_channels(self, info):
        return 3

    def loss(self, logits, target):
        """ATRC ``L1Loss(normalize=True)``: Σ over valid pixels and 3 channels / n_valid pixels."""
        pred = F.normalize(logits.float(), p=2, dim=1)
        valid = self.valid(target).unsqueeze(1)
        n_valid = valid.sum().clamp(min=1)
        return ((pred - target).abs() * valid).sum() / n_valid

    def postprocess(self, logits):
        return F.normalize(logits.float(), p=2, dim=1)

    @classmethod
    def evaluator_class(cls):
        return NormalsEvaluator

    def evaluator(self, info, eval_cfg):
        return NormalsEvaluator()

    def prior_stats(self, target, info):
        valid = self.valid(target).unsqueeze(1)
        return (target * valid).sum(dim=(0, 2, 3)).double()

    def prior_prediction(self, stats, like):
        mean = F.normalize(stats.float(), dim=0).to(like.device)
        return mean.view(1, 3, 1, 1).expand(like.shape[0], 3, *like.shape[2:]).contiguous()


register_task("normals")(Normals())
