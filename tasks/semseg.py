"""Semantic segmentation: CE with ignore 255, scored by dataset-pooled mIoU."""
from __future__ import annotations

from mtbench.metrics.segmentation import SegmentationEvaluator
from mtbench.registry import register_task
from mtbench.task import Task
from tasks._labels import ce_loss, class_histogram, majority_prediction


class Semseg(Task):
    name = "semseg"
    primary_metric = "mIoU"
    prediction_kind = "labels"
    weights = {"nyud": 1.0, "pascal": 1.0}

    def out_channels(self, info):
        return info.num_classes[self.name]

    def loss(self, logits, target):
        return ce_loss(logits, target)

    def postprocess(self, logits):
        return logits.argmax(dim=1)

    @classmethod
    def evaluator_class(cls):
        return SegmentationEvaluator

    def evaluator(self, info, eval_cfg):
        return SegmentationEvaluator(info.num_classes[self.name], info.class_names.get(self.name))

    def prior_stats(self, target, info):
        return class_histogram(target, info.num_classes[self.name])

    def prior_prediction(self, stats, like):
        return majority_prediction(stats, like)


register_task("semseg")(Semseg())
