"""Building blocks several methods share (the ATRC/MQT code bases use the same ones)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


def resize_concat(features: list[torch.Tensor]) -> torch.Tensor:
    """All levels bilinearly resized to the finest one (stride 4) and concatenated, as ATRC."""
    size = features[0].shape[-2:]
    return torch.cat(
        [f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
         for f in features],
        dim=1,
    )


def logits_conv(cin: int, cout: int) -> nn.Conv2d:
    """Final 1×1 prediction layer, initialised N(0, 0.01) with zero bias as in the ATRC heads."""
    conv = nn.Conv2d(cin, cout, kernel_size=1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


def upsample_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
