"""SegNet as MTAN builds it (lorenmt/mtan ``im2im_pred/model_segnet_*.py``), registered as the backbone ``segnet``.

Five encoder stages (3×3 conv–BN–ReLU blocks, one conv in the first two stages, two in the others; filters
64-128-256-512-512) each ended by a 2×2 max-pool that keeps its indices, and the mirrored decoder that unpools with
them. The backbone returns the last decoder map (64 channels, stride 1); ``features`` also returns the intermediate
maps MTAN's attention modules read. Names follow the release (``encoder_block``, ``conv_block_enc``, …), so the
released state dicts map onto ours by stripping a prefix. MTAN trains it from scratch (Xavier-normal convolutions,
zero biases, BN weight 1 / bias 0: ``init_mtan``); no checkpoint layout is read.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from mtbench.registry import register_backbone

FILTERS = (64, 128, 256, 512, 512)


def conv_layer(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def pred_layer(cin: int, cout: int) -> nn.Sequential:
    """MTAN's ``conv_layer(pred=True)``: 3×3 conv (no BN, no activation), then the 1×1 logits."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1), nn.Conv2d(cin, cout, 1))


def init_mtan(module: nn.Module) -> None:
    """The release's initialisation, applied to every module of the network."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.constant_(m.bias, 0)


class SegNet(nn.Module):
    family = "segnet"
    single_task_head = "segnet"  # the reference of its setting: the release's single-task SegNet

    def __init__(self, filters: Sequence[int] = FILTERS, img_size: tuple[int, int] = (0, 0)):
        super().__init__()
        f = [int(x) for x in filters]
        if len(f) != 5:
            raise ValueError(f"segnet needs 5 filter widths (MTAN: {list(FILTERS)}), got {f}")
        self.filters = f
        self.encoder_block = nn.ModuleList([conv_layer(3, f[0])] + [conv_layer(f[i], f[i + 1]) for i in range(4)])
        self.decoder_block = nn.ModuleList([conv_layer(f[0], f[0])] + [conv_layer(f[i + 1], f[i]) for i in range(4)])
        enc, dec = [conv_layer(f[0], f[0])], [conv_layer(f[0], f[0])]
        for i in range(4):
            if i == 0:
                enc.append(conv_layer(f[1], f[1]))
                dec.append(conv_layer(f[0], f[0]))
            else:
                enc.append(nn.Sequential(conv_layer(f[i + 1], f[i + 1]), conv_layer(f[i + 1], f[i + 1])))
                dec.append(nn.Sequential(conv_layer(f[i], f[i]), conv_layer(f[i], f[i])))
        self.conv_block_enc, self.conv_block_dec = nn.ModuleList(enc), nn.ModuleList(dec)
        self.down_sampling = nn.MaxPool2d(kernel_size=2, stride=2, return_indices=True)
        self.up_sampling = nn.MaxUnpool2d(kernel_size=2, stride=2)
        # what the benchmark's backbone contract declares (mtbench.backbones.describe)
        self.name, self.timm_name, self.channels, self.strides = "segnet", "segnet (lorenmt/mtan)", [f[0]], [1]
        self.img_size, self.out_norms = tuple(img_size), None
        self.weights_source, self.load_report = "random init (Xavier-normal, as MTAN)", {}

    def features(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """The shared network's maps, stage by stage: ``enc0``/``enc1`` (encoder block and conv block outputs,
        before pooling), ``up`` (unpooled decoder inputs) and ``dec`` (decoder conv block outputs)."""
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(f"segnet pools 5 times: H and W must be multiples of 32, got {tuple(x.shape[-2:])}")
        enc0, enc1, indices, up, dec = [], [], [], [], []
        h = x
        for i in range(5):
            enc0.append(self.encoder_block[i](h))
            enc1.append(self.conv_block_enc[i](enc0[i]))
            h, idx = self.down_sampling(enc1[i])
            indices.append(idx)
        for i in range(5):
            up.append(self.up_sampling(h, indices[-i - 1]))
            h = self.conv_block_dec[-i - 1](self.decoder_block[-i - 1](up[i]))
            dec.append(h)
        return {"enc0": enc0, "enc1": enc1, "up": up, "dec": dec}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.features(x)["dec"][-1]]


@register_backbone("segnet")
def build_segnet(img_size: tuple[int, int], checkpoint: str | None = None, segnet_filters: Sequence[int] = FILTERS,
                 **timm_options: Any) -> SegNet:
    """``backbone_cfg.segnet_filters`` narrows it (CPU tests); timm options of a recipe's other backbone (e.g.
    ``output_stride`` for hps) do not apply to SegNet and are ignored."""
    if checkpoint:
        raise ValueError("segnet is trained from scratch, as in MTAN: drop --backbone-weights for it")
    net = SegNet(segnet_filters, img_size)
    init_mtan(net)
    return net
