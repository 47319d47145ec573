"""MTI-Net (Vandenhende et al., ECCV 2020), rebuilt from the release ``models/mti_net.py``.

Per backbone scale s (channels C_s), coarse to fine (3 → 0):

1. initial task predictions (``InitialTaskPredictionModule``): per task, the backbone level concatenated
   with that task's propagated features from scale s+1 (bilinearly upsampled), two BasicBlocks down to
   C_s channels, a 1×1 conv to the task's logits (deeply supervised);
2. feature propagation (``FPM``, scales 3, 2, 1): the tasks' features are mixed into one shared map that
   every task reads back through its own squeeze-and-excitation, and passed to scale s-1;
3. multi-modal distillation (PAD-Net's module) on the scale-s task features.

Each task's head (``HighResolutionHead``) concatenates its distilled features of all four scales at
stride 4 and applies 1×1 conv (with bias) → BN → ReLU → 1×1 conv. All decoder layers keep PyTorch's
default initialisation, as the release does. Differences from the release: see methods/README.md.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mtbench.layers import resize_concat, upsample_to
from mtbench.registry import register_method
from methods._distillation import (AUX_KEYS, BasicBlock, MultiModalDistillation, SqueezeExcitation,
                                   check_cfg, resolve_aux_tasks)

NUM_SCALES = 4


class InitialTaskPredictions(nn.Module):
    """One scale's per-task refinement (two BasicBlocks to ``width``) and 1×1 logits."""

    def __init__(self, task_channels: dict[str, int], cin: int, width: int):
        super().__init__()
        self.refine = nn.ModuleDict({t: nn.Sequential(BasicBlock(cin, width), BasicBlock(width, width))
                                     for t in task_channels})
        self.decode = nn.ModuleDict({t: nn.Conv2d(width, c, 1) for t, c in task_channels.items()})

    def forward(self, level: torch.Tensor, propagated: dict[str, torch.Tensor] | None = None):
        feats, preds = {}, {}
        for t, refine in self.refine.items():
            x = level
            if propagated is not None:
                # The release upsamples by scale_factor=2; resizing to the level's size is the same
                # interpolation when sizes are exact multiples and also works when they are not.
                x = torch.cat((level, upsample_to(propagated[t], level.shape[-2:])), dim=1)
            feats[t] = refine(x)
            preds[t] = self.decode[t](feats[t])
        return feats, preds


class FeaturePropagation(nn.Module):
    """The release's FPM on the N tasks' C-channel features of one scale.

    shared = f(concat) with f = BasicBlock(NC → NC/4), BasicBlock(NC/4), 1×1 conv(NC/4 → NC, bias);
    mask = softmax of f's output viewed as (B, NC/N, N, H, W) over dim 2, times the concat viewed the same
    way; BasicBlock(NC → C); then out[t] = SE_t(shared) + f_t. Note on the view, kept as released: channel
    k of the concatenation lands in group k // N, so each softmax runs over N *consecutive* channels of
    the concatenation (mostly channels of one task), not over the N tasks at one channel as the release's
    comment ("per task attention mask") and the paper suggest. Changing it would change the method.
    """

    def __init__(self, tasks: list[str], width: int):
        super().__init__()
        self.tasks = list(tasks)
        n = len(self.tasks)
        shared = n * width
        self.non_linear = nn.Sequential(BasicBlock(shared, shared // 4), BasicBlock(shared // 4, shared // 4),
                                        nn.Conv2d(shared // 4, shared, 1))
        self.dimensionality_reduction = BasicBlock(shared, width)
        self.se = nn.ModuleDict({t: SqueezeExcitation(width) for t in self.tasks})

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        concat = torch.cat([feats[t] for t in self.tasks], dim=1)
        b, c, h, w = concat.shape
        n = len(self.tasks)
        mask = F.softmax(self.non_linear(concat).view(b, c // n, n, h, w), dim=2)
        shared = (mask * concat.view(b, c // n, n, h, w)).view(b, c, h, w)
        shared = self.dimensionality_reduction(shared)
        return {t: self.se[t](shared) + feats[t] for t in self.tasks}


class HighResolutionHead(nn.Module):
    """Release ``HighResolutionHead``: all scales bilinearly to the finest, concat, 1×1-BN-ReLU-1×1."""

    def __init__(self, channels: list[int], cout: int):
        super().__init__()
        cin = sum(channels)
        self.last_layer = nn.Sequential(nn.Conv2d(cin, cin, 1), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                                        nn.Conv2d(cin, cout, 1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.last_layer(resize_concat(feats))


class MTINet(nn.Module):
    """MTI-Net on any 4-level backbone; ``aux_tasks`` are the distillation's source tasks.

    Every task of the run is a main task: it has initial predictions at all four scales (deeply
    supervised, ``aux["scale_s"]``), takes part in every FPM and gets a final head. ``aux_tasks``
    (default: all) only selects whose features send distillation messages.
    """

    def __init__(self, backbone: nn.Module, task_channels: dict[str, int], aux_tasks: list[str]):
        super().__init__()
        ch = list(backbone.channels)
        if len(ch) != NUM_SCALES:
            raise ValueError(f"method 'mtinet' needs a backbone with exactly {NUM_SCALES} feature levels "
                             f"(strides 4, 8, 16, 32 as HRNet), got {len(ch)} levels with channels {ch} "
                             f"from backbone '{getattr(backbone, 'name', type(backbone).__name__)}'")
        self.backbone = backbone
        self.tasks = list(task_channels)
        self.aux_tasks = list(aux_tasks)
        # Scale s reads its backbone level plus the propagated C_{s+1}-channel task features.
        self.initial = nn.ModuleList(
            InitialTaskPredictions(task_channels, ch[s] + (ch[s + 1] if s < NUM_SCALES - 1 else 0), ch[s])
            for s in range(NUM_SCALES))
        # FPMs at scales 1..3 feed scales 0..2; index 0 is unused (the release has no fpm_scale_0).
        self.fpm = nn.ModuleList(nn.Identity() if s == 0 else FeaturePropagation(self.tasks, ch[s])
                                 for s in range(NUM_SCALES))
        self.distillation = nn.ModuleList(MultiModalDistillation(self.tasks, self.aux_tasks, ch[s])
                                          for s in range(NUM_SCALES))
        self.heads = nn.ModuleDict({t: HighResolutionHead(ch, c) for t, c in task_channels.items()})

    def forward(self, images: torch.Tensor) -> dict:
        size = images.shape[-2:]
        levels = self.backbone(images)
        feats: list[dict] = [{}] * NUM_SCALES
        aux = {}
        propagated = None
        for s in reversed(range(NUM_SCALES)):
            feats[s], preds = self.initial[s](levels[s], propagated)
            aux[f"scale_{s}"] = {t: upsample_to(p, size) for t, p in preds.items()}
            if s > 0:
                propagated = self.fpm[s](feats[s])
        distilled = [self.distillation[s](feats[s]) for s in range(NUM_SCALES)]
        final = {t: upsample_to(head([d[t] for d in distilled]), size) for t, head in self.heads.items()}
        return {"final": final, "aux": {k: aux[k] for k in sorted(aux)}}


@register_method("mtinet")
def build_mtinet(task_channels, backbone, cfg):
    """cfg: ``aux_tasks`` (alias ``auxilary_tasks``): tasks whose features send distillation messages."""
    cfg = check_cfg("mtinet", cfg, AUX_KEYS)
    return MTINet(backbone, dict(task_channels), resolve_aux_tasks("mtinet", cfg, task_channels))


build_mtinet.cfg_keys = AUX_KEYS  # checked against the recipe before any run (mtbench.recipe_check)
