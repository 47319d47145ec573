"""``mtan``: Multi-Task Attention Network on SegNet (Liu, Johns & Davison, CVPR 2019; lorenmt/mtan
``im2im_pred/model_segnet_mtan.py``, and CAGrad's ``cityscapes/model_segnet_mtan.py`` for two tasks).

A shared SegNet (the ``segnet`` backbone) and, per task, soft attention masks at every stage. Encoder stage j:
a_j = att_j(cat(enc0_j, ā_{j−1})) (1×1 conv–BN–ReLU, 1×1 conv–BN–sigmoid; stage 0 takes enc0_0 alone), times the
shared enc1_j, then a *shared* 3×3 conv block (``encoder_block_att``) and a 2×2 max-pool → ā_j. Decoder stage j:
the previous attended map upsampled ×2 (bilinear, ``align_corners=True``), a shared conv block
(``decoder_block_att``), a task mask from cat(up_j, ·) times the shared dec_j. Each task's last attended map goes
to its prediction layer (3×3 conv, 1×1 conv). As released: Xavier-normal initialisation of every conv.

Differences from the release, none of which changes the function: semseg returns logits (the release returns
their log-softmax for ``nll_loss``; the task's cross-entropy is the same loss), normals return the raw output (the
release divides by its norm; ``normals_libmtl`` normalises in its loss and metric, so both give the same numbers),
and the three ``logsigma`` parameters of the release's uncertainty weighting are not part of the network (a
weighting strategy owns its parameters). The parameter count is therefore the release's minus the number of tasks.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods._segnet import conv_layer, init_mtan, pred_layer
from mtbench.registry import register_method


def att_layer(cin: int, mid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, mid, 1), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, cout, 1), nn.BatchNorm2d(cout), nn.Sigmoid())


class MTAN(nn.Module):
    def __init__(self, backbone: nn.Module, task_channels: dict[str, int]):
        super().__init__()
        if getattr(backbone, "family", None) != "segnet":
            raise ValueError("mtan's attention modules read SegNet's stages: it runs on the 'segnet' backbone")
        self.backbone, self.tasks = backbone, list(task_channels)
        f = backbone.filters
        # task-specific attention (index = task order), released names and nesting: encoder_att[task][stage]
        self.encoder_att = nn.ModuleList(
            nn.ModuleList([att_layer(f[0], f[0], f[0])] + [att_layer(2 * f[i + 1], f[i + 1], f[i + 1]) for i in range(4)])
            for _ in self.tasks)
        self.decoder_att = nn.ModuleList(
            nn.ModuleList([att_layer(2 * f[0], f[0], f[0])] + [att_layer(f[i + 1] + f[i], f[i], f[i]) for i in range(4)])
            for _ in self.tasks)
        # shared between tasks
        self.encoder_block_att = nn.ModuleList([conv_layer(f[0], f[1])] + [
            conv_layer(f[i + 1], f[i + 2]) if i < 3 else conv_layer(f[i + 1], f[i + 1]) for i in range(4)])
        self.decoder_block_att = nn.ModuleList([conv_layer(f[0], f[0])] + [
            conv_layer(f[i + 1], f[i]) if i < 3 else conv_layer(f[i + 1], f[i + 1]) for i in range(4)])
        self.pred = nn.ModuleDict({t: pred_layer(f[0], c) for t, c in task_channels.items()})
        init_mtan(self)

    def forward(self, images: torch.Tensor) -> dict:
        g = self.backbone.features(images)
        final = {}
        for k, task in enumerate(self.tasks):
            a = None
            for j in range(5):
                inp = g["enc0"][j] if j == 0 else torch.cat((g["enc0"][j], a), dim=1)
                a = F.max_pool2d(self.encoder_block_att[j](self.encoder_att[k][j](inp) * g["enc1"][j]), 2, 2)
            for j in range(5):
                a = F.interpolate(a, scale_factor=2, mode="bilinear", align_corners=True)
                a = self.decoder_block_att[-j - 1](a)
                a = self.decoder_att[k][-j - 1](torch.cat((g["up"][j], a), dim=1)) * g["dec"][j]
            final[task] = self.pred[task](a)
        return {"final": final, "aux": {}}


@register_method("mtan")
def build_mtan(task_channels, backbone, cfg):
    return MTAN(backbone, task_channels)


build_mtan.cfg_keys = ()
build_mtan.fixed_backbone = "segnet"  # the architecture is SegNet's: the grid runs it (and its references) there
