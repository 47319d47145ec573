"""Single-task networks and the shared-encoder multi-task baseline (the ATRC baseline).

Both use ATRC's ``FCNHead`` per task: all backbone levels resized to stride 4 and concatenated,
ConvBNReLU 3×3 (C → C/4), 1×1 logits, bilinear to the input size. The single-task network is
the same model with one task, so Δm measures the effect of sharing and nothing else.
"""
from __future__ import annotations

import torch.nn as nn

from mtbench.layers import ConvBNReLU, logits_conv, resize_concat, upsample_to
from mtbench.registry import register_method


class FCNHead(nn.Module):
    def __init__(self, cin: int, cout: int, hidden: int):
        super().__init__()
        self.bottleneck = ConvBNReLU(cin, hidden, 3)
        self.logits = logits_conv(hidden, cout)

    def forward(self, x):
        return self.logits(self.bottleneck(x))


class SharedEncoderBaseline(nn.Module):
    def __init__(self, backbone: nn.Module, task_channels: dict[str, int], head_channels: int | None = None):
        super().__init__()
        self.backbone = backbone
        cin = sum(backbone.channels)
        hidden = head_channels or cin // 4  # ATRC: in_channels // 4
        self.heads = nn.ModuleDict({t: FCNHead(cin, c, hidden) for t, c in task_channels.items()})

    def forward(self, images):
        feats = resize_concat(self.backbone(images))
        size = images.shape[-2:]
        return {"final": {t: upsample_to(h(feats), size) for t, h in self.heads.items()}, "aux": {}}


@register_method("baseline")
def build_baseline(task_channels, backbone, cfg):
    return SharedEncoderBaseline(backbone, task_channels, head_channels=cfg.get("head_channels"))


build_baseline.cfg_keys = ("head_channels",)  # checked against the recipe before any run (mtbench.recipe_check)


@register_method("single")
def build_single(task_channels, backbone, cfg):
    """One task on the setting's network: ATRC's FCN head (default), LibMTL's ASPP head (``head: aspp``, the
    single-task baseline of ``hps``), or, on the ``segnet`` backbone, MTAN's single-task SegNet (its prediction
    layer; that backbone declares it, whatever ``head`` says)."""
    if len(task_channels) != 1:
        raise ValueError(f"method 'single' trains one task per run, got {sorted(task_channels)}; "
                         f"the grid expands it into one run per task")
    head = getattr(backbone, "single_task_head", None) or cfg.get("head", "fcn")
    if head == "segnet":
        from methods.segnet_split import SegNetSplit

        return SegNetSplit(backbone, task_channels)
    if head == "aspp":
        from methods.hps import HPS

        return HPS(backbone, task_channels, int(cfg.get("aspp_channels", 256)))
    if head != "fcn":
        raise ValueError(f"methods.single.head must be fcn or aspp, got {head!r}")
    return SharedEncoderBaseline(backbone, task_channels, head_channels=cfg.get("head_channels"))


build_single.single_task = True
build_single.cfg_keys = ("head_channels", "head", "aspp_channels")
