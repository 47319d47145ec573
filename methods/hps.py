"""``hps``: hard parameter sharing as LibMTL runs it on NYUv2 and Cityscapes (``LibMTL/architecture/HPS.py``,
``examples/nyu/main.py``, ``examples/nyu/aspp.py``, ``examples/cityscapes/main.py``).

One shared encoder — LibMTL's dilated ResNet-50 (``resnet_dilated('resnet50')``: layer3 dilation 2, layer4
dilation 4, output stride 8, 2048 channels) — and per task a DeepLabV3 ``DeepLabHead``: ASPP (1×1 branch, three
3×3 branches at rates 12 / 24 / 36, image pooling; 256 channels; 1×1 projection, dropout 0.5), a 3×3 conv–BN–ReLU
and the 1×1 logits. LibMTL's ``process_preds`` resizes every output to the image size bilinearly with
``align_corners=True`` before loss and metric; so do we.

Any backbone whose last level has stride 8 works: the recipes use ``resnet50`` with ``backbone_cfg.output_stride:
8`` — timm's dilation is LibMTL's (first block of layer3 / layer4 at dilation 1 / 2, the others 2 / 4, strided
convs made stride 1), and the parameter names are torchvision's, so LibMTL weights map by name. Module names
(``decoders.<task>.0.convs.…``) are LibMTL's. LibMTL feeds images in [0, 1] without ImageNet normalisation; the
``*_mtan`` datasets do the same.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mtbench.registry import register_method

ATROUS_RATES = (12, 24, 36)


def _cbr(cin: int, cout: int, k: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=dilation if k == 3 else 0, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]


class ASPPPooling(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), *_cbr(cin, cout))

    def forward(self, x):
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, cin: int, rates=ATROUS_RATES, channels: int = 256):
        super().__init__()
        branches = [nn.Sequential(*_cbr(cin, channels))]
        branches += [nn.Sequential(*_cbr(cin, channels, 3, r)) for r in rates]
        self.convs = nn.ModuleList(branches + [ASPPPooling(cin, channels)])
        self.project = nn.Sequential(*_cbr(len(self.convs) * channels, channels), nn.Dropout(0.5))

    def forward(self, x):
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    def __init__(self, cin: int, cout: int, channels: int = 256):
        super().__init__(ASPP(cin, channels=channels), *_cbr(channels, channels, 3), nn.Conv2d(channels, cout, 1))


class HPS(nn.Module):
    def __init__(self, backbone: nn.Module, task_channels: dict[str, int], aspp_channels: int = 256):
        super().__init__()
        if backbone.strides[-1] != 8:
            raise ValueError(f"hps decodes a stride-8 map (LibMTL's dilated ResNet-50); backbone "
                             f"'{getattr(backbone, 'name', '?')}' ends at stride {backbone.strides[-1]}: set "
                             f"backbone_cfg.output_stride: 8 (timm ResNets) or pick a stride-8 backbone")
        self.backbone = backbone
        self.decoders = nn.ModuleDict({t: DeepLabHead(backbone.channels[-1], c, aspp_channels)
                                       for t, c in task_channels.items()})

    def forward(self, images):
        rep = self.backbone(images)[-1]
        size = images.shape[-2:]
        return {"final": {t: F.interpolate(d(rep), size, mode="bilinear", align_corners=True)
                          for t, d in self.decoders.items()}, "aux": {}}


@register_method("hps")
def build_hps(task_channels, backbone, cfg):
    return HPS(backbone, task_channels, int(cfg.get("aspp_channels", 256)))


build_hps.cfg_keys = ("aspp_channels",)  # 256 in LibMTL; smaller only for CPU tests
