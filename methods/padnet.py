"""PAD-Net (Xu et al., CVPR 2018) as in Vandenhende's release ``models/padnet.py`` (HRNet-18 configs).

1. fused features (the release's ``HighResolutionFuse``, used with ``fuse_hrnet: True``): all backbone
   levels bilinearly to stride 4, concatenated (ΣC channels), 1×1 conv (with bias) → BN → ReLU;
2. initial predictions per task: Bottleneck(ΣC → 256, projection shortcut), Bottleneck(256), 1×1 conv to
   the task's logits, deeply supervised (``aux["initial"]``);
3. multi-modal distillation on the 256-channel task features: each target task adds an attention-gated
   message (its own ``SABlock``) from every other source task;
4. final heads per task: Bottleneck(256) ×2, 1×1 conv; logits at stride 4, bilinearly to the input.

All decoder layers keep PyTorch's default initialisation, as the release does.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from mtbench.layers import resize_concat, upsample_to
from mtbench.registry import register_method
from methods._distillation import AUX_KEYS, Bottleneck, MultiModalDistillation, check_cfg, resolve_aux_tasks

TASK_CHANNELS = 256  # the release's intermediate_channels, fixed in its code


class HighResolutionFuse(nn.Module):
    """Release ``HighResolutionFuse`` (there part of the backbone; here part of the decoder)."""

    def __init__(self, channels: list[int]):
        super().__init__()
        cin = sum(channels)
        self.last_layer = nn.Sequential(nn.Conv2d(cin, cin, 1), nn.BatchNorm2d(cin), nn.ReLU(inplace=True))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.last_layer(resize_concat(feats))


def _task_branch(cin: int, width: int) -> nn.Sequential:
    return nn.Sequential(Bottleneck(cin, width // 4), Bottleneck(width, width // 4))


class PADNet(nn.Module):
    """PAD-Net on any backbone; ``aux_tasks`` are the distillation's source tasks.

    Every task of the run is a main task: it has an initial prediction (deeply supervised), receives
    distillation messages and has a final head. ``aux_tasks`` (default: all) selects the senders.
    """

    def __init__(self, backbone: nn.Module, task_channels: dict[str, int], aux_tasks: list[str]):
        super().__init__()
        self.backbone = backbone
        self.tasks = list(task_channels)
        self.aux_tasks = list(aux_tasks)
        cin = sum(backbone.channels)
        width = TASK_CHANNELS
        self.fuse = HighResolutionFuse(list(backbone.channels))
        self.initial = nn.ModuleDict({t: _task_branch(cin, width) for t in self.tasks})
        self.initial_out = nn.ModuleDict({t: nn.Conv2d(width, c, 1) for t, c in task_channels.items()})
        self.distillation = MultiModalDistillation(self.tasks, self.aux_tasks, width)
        self.heads = nn.ModuleDict({t: nn.Sequential(*_task_branch(width, width), nn.Conv2d(width, c, 1))
                                    for t, c in task_channels.items()})

    def forward(self, images: torch.Tensor) -> dict:
        size = images.shape[-2:]
        x = self.fuse(self.backbone(images))
        feats = {t: branch(x) for t, branch in self.initial.items()}
        initial = {t: upsample_to(self.initial_out[t](f), size) for t, f in feats.items()}
        distilled = self.distillation(feats)
        final = {t: upsample_to(head(distilled[t]), size) for t, head in self.heads.items()}
        return {"final": final, "aux": {"initial": initial}}


@register_method("padnet")
def build_padnet(task_channels, backbone, cfg):
    """cfg: ``aux_tasks`` (alias ``auxilary_tasks``): tasks whose features send distillation messages."""
    cfg = check_cfg("padnet", cfg, AUX_KEYS)
    return PADNet(backbone, dict(task_channels), resolve_aux_tasks("padnet", cfg, task_channels))


build_padnet.cfg_keys = AUX_KEYS  # checked against the recipe before any run (mtbench.recipe_check)
