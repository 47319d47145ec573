"""DeMT's spatial-aware deformable operator (released ``ChlSpl`` + ``Offset`` in ``demt_head.py``).

A 1×1 deformable convolution in which every input channel is sampled at its own offset: torchvision's
``deform_conv2d`` with one offset group per channel and a 1×1 kernel, i.e. per channel a bilinear sample of
that channel at (row + dy_c, col + dx_c) (zero outside the map), then a 1×1 convolution mixing the channels.

The offsets are what the release computes: a 3×3 conv (``p_conv``, weight zero-initialised) predicts 18
channels from the features; the *absolute* 1-based pixel coordinates of a 3×3 kernel grid are added (rows to
the first 9 channels, columns to the last 9, the DCNv1 re-implementation's ``p_0 + p_n``); and a grouped 3×3
conv (``opt``, 2 groups) maps those 18 position channels to the 2·C offsets. So the offsets depend on where a
pixel is in the map, not only on what it sees. torchvision reads offset channels as (dy, dx) pairs per
group: channels 0..C/2-1 take both of their offsets from the row half, C/2..C-1 from the column half.

Importing this module also gives torch's flop counter a formula for torchvision's op (it counts none).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
from torch.utils.flop_counter import flop_registry, register_flop_formula
from torchvision.ops import deform_conv2d

KERNEL = 3  # the released Offset(kernel_size=3): a 3×3 grid of positions, 18 offset channels


def kernel_positions(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, 2·k², h, w): 1-based row of each pixel plus the k×k grid's row offsets (−1, −1, −1, 0, …, 1), then
    the same for columns (−1, 0, 1, −1, …); the release's ``_get_p_0(h, w) + _get_p_n`` for k = 3."""
    r = torch.arange(-(KERNEL // 2), KERNEL // 2 + 1, device=device)
    k_rows, k_cols = r.repeat_interleave(KERNEL), r.repeat(KERNEL)
    rows = torch.arange(1, h + 1, device=device).view(1, 1, h, 1) + k_rows.view(1, -1, 1, 1)
    cols = torch.arange(1, w + 1, device=device).view(1, 1, 1, w) + k_cols.view(1, -1, 1, 1)
    n = KERNEL * KERNEL
    return torch.cat([rows.expand(1, n, h, w), cols.expand(1, n, h, w)], dim=1).to(dtype)


class OffsetNet(nn.Module):
    """Released ``Offset``: ``opt(positions + p_conv(x))``. Computed in (at least) float32 with autocast off:
    positions reach the map size, and half precision would round them (the release trains in float32).
    The release also registers a backward hook on ``p_conv`` meant to scale its gradient by 0.1; the hook
    builds two generators and returns None, so it changes nothing, and it is not reproduced."""

    def __init__(self, dim: int):
        super().__init__()
        self.p_conv = nn.Conv2d(dim, 2 * KERNEL * KERNEL, 3, padding=1)
        nn.init.zeros_(self.p_conv.weight)  # released: constant 0 (its bias keeps the default init)
        self.opt = nn.Conv2d(2 * KERNEL * KERNEL, 2 * dim, 3, padding=1, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device_type = x.device.type
        no_autocast = (torch.autocast(device_type, enabled=False) if device_type in ("cuda", "cpu", "xpu")
                       else contextlib.nullcontext())
        with no_autocast:
            offset = self.p_conv(x.to(torch.promote_types(x.dtype, torch.float32)))
            return self.opt(kernel_positions(*offset.shape[-2:], offset.device, offset.dtype) + offset)


class ChannelDeformConv(nn.Module):
    """Released ``ChlSpl``: the per-channel deformable 1×1 convolution (its unused ``offset`` buffer and
    kernel_size argument, which only fed that buffer, are left out)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dim, 1, 1))
        self.bias = nn.Parameter(torch.empty(dim))
        self.get_offset = OffsetNet(dim)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as released (= nn.Conv2d's default init)
        nn.init.uniform_(self.bias, -1 / math.sqrt(dim), 1 / math.sqrt(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under autocast torchvision runs this op in float32 (its autocast kernel), so the float32 offsets
        # are used unrounded.
        return deform_conv2d(x, self.get_offset(x), self.weight, self.bias)


def deform_conv2d_flop(input_shape, weight_shape, offset_shape, mask_shape, bias_shape, *args, out_shape=None,
                       **kwargs) -> int:
    """FLOPs of ``torchvision::deform_conv2d`` as of a convolution with the same kernel (2 per multiply-add),
    the convention of conv FLOP counters; the bilinear sampling (4 multiply-adds per sampled value, 1/C_out of
    the total for DeMT's 1×1 kernel) is not counted, as torch's counter counts no interpolation."""
    n, c_out, h, w = out_shape
    c_in_per_group, kh, kw = weight_shape[1:]
    return 2 * n * c_out * h * w * c_in_per_group * kh * kw


if torch.ops.torchvision.deform_conv2d not in flop_registry:
    register_flop_formula(torch.ops.torchvision.deform_conv2d)(deform_conv2d_flop)
