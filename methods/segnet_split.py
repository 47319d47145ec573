"""``segnet_split``: MTAN's "Split, Standard" baseline (lorenmt/mtan ``im2im_pred/model_segnet_split.py``,
``--type standard``): the whole SegNet shared, one prediction layer per task (3×3 conv, 1×1 conv).

Its single-task reference is the release's ``model_segnet_single.py``: the same SegNet with one prediction layer,
which ``single`` builds on the ``segnet`` backbone. As in ``mtan``: logits for semseg, raw normals, no
``logsigma`` (the release's count minus the number of tasks).
"""
from __future__ import annotations

import torch.nn as nn

from methods._segnet import init_mtan, pred_layer
from mtbench.registry import register_method


class SegNetSplit(nn.Module):
    def __init__(self, backbone: nn.Module, task_channels: dict[str, int]):
        super().__init__()
        if getattr(backbone, "family", None) != "segnet":
            raise ValueError("segnet_split is SegNet with task layers: it runs on the 'segnet' backbone")
        self.backbone = backbone
        self.pred = nn.ModuleDict({t: pred_layer(backbone.filters[0], c) for t, c in task_channels.items()})
        init_mtan(self)

    def forward(self, images):
        x = self.backbone(images)[-1]
        return {"final": {t: head(x) for t, head in self.pred.items()}, "aux": {}}


@register_method("segnet_split")
def build_segnet_split(task_channels, backbone, cfg):
    return SegNetSplit(backbone, task_channels)


build_segnet_split.cfg_keys = ()
build_segnet_split.fixed_backbone = "segnet"
