"""Human parts (PASCAL-Part persons; object sub-parts on synthetic scenes): CE, mIoU.

Images without a person carry only ignore labels, so they add nothing to loss or metric.
"""
from __future__ import annotations

from mtbench.metrics.segmentation import SegmentationEvaluator
from mtbench.registry import register_task
from tasks.semseg import Semseg


class HumanParts(Semseg):
    name = "human_parts"
    primary_metric = "mIoU"
    weights = {"nyud": 2.0, "pascal": 2.0}

    def evaluator(self, info, eval_cfg):
        return SegmentationEvaluator(info.num_classes[self.name], info.class_names.get(self.name))


register_task("human_parts")(HumanParts())
