"""Saliency: 2-channel output, class-balanced CE (InvPT/ATRC), scored by maxF and MTI-Net's mIoU."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mtbench.data.base import IGNORE
from mtbench.metrics.saliency import SaliencyEvaluator
from mtbench.registry import register_task
from mtbench.task import Task, positive_stats, ratio_prediction


class Saliency(Task):
    name = "sal"
    primary_metric = "maxF"
    prediction_kind = "probability"
    weights = {"nyud": 5.0, "pascal": 5.0}

    def out_channels(self, info):
        return 2

    def loss(self, logits, target):
        """InvPT ``CrossEntropyLoss(balanced=True)``: class weights (pos fraction, neg fraction)
        from the batch's labelled pixels; weighted per-pixel CE summed / n_valid (not / Σweights)."""
        target = target.long()
        valid = target != IGNORE
        n_valid = valid.sum().clamp(min=1)
        w_pos = ((target == 0) & valid).sum() / n_valid  # fraction of negatives weights positives
        class_weight = torch.stack([1.0 - w_pos, w_pos]).float()
        loss = F.cross_entropy(logits.float(), target, weight=class_weight, ignore_index=IGNORE, reduction="sum")
        return loss / n_valid

    def postprocess(self, logits):
        return torch.softmax(logits.float(), dim=1)[:, 1]

    @classmethod
    def evaluator_class(cls):
        return SaliencyEvaluator

    def evaluator(self, info, eval_cfg):
        return SaliencyEvaluator()

    def prior_stats(self, target, info):
        return positive_stats(target)

    def prior_prediction(self, stats, like):
        return ratio_prediction(stats, like)


register_task("sal")(Saliency())
