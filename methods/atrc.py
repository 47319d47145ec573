"""ATRC, Adaptive Task-Relational Context (Brüggemann et al., ICCV 2021), as released in ``brdav/atrc``
(``src/model/heads/relationalcontext.py``: ``RelationalContextHead``).

1. All backbone levels bilinearly at the finest (stride 4) and concatenated (ΣC channels).
2. Per task a 3×3 ConvBNAct ΣC → C = ΣC/4 (``bottleneck``).
3. Initial predictions, only for tasks a label context reads: on the *detached* concatenation, 1×1
   ConvBNAct ΣC → ΣC and a 1×1 conv to the release's auxiliary channels (depth bins, normal clusters,
   2 edge classes; see ``_atrc_aux``). Deeply supervised under ``aux["initial"]``.
4. ATRC module: one context-pooling block per (target, source) pair, of the kind the genotype names
   (none, global, local, t-label, s-label; ``_atrc_context``), fused into each target's features.
5. 1×1 conv to the task's logits, bilinearly to the input size.

The genotype comes from a published search (``genotype: nyud_hrnet18``), a mapping, or one ``context`` for
all pairs; the search itself is not part of mtbench.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from mtbench.layers import logits_conv, resize_concat, upsample_to
from mtbench.registry import register_method
from methods._atrc_aux import aux_channels, aux_losses, load_centroids
from methods._atrc_context import ATRCModule, ConvBNAct, spatial_softmax
from methods._atrc_genotype import label_tasks, resolve
from methods._distillation import check_cfg

OPTIONS = ("genotype", "context", "normals_centroids", "head_channels")
PYRAMID_STRIDES = [4, 8, 16, 32]  # HRNet's four branches; ResNet and Swin stages have the same


class ATRCHead(nn.Module):
    """``RelationalContextHead`` on a list of backbone levels; submodule names as released."""

    def __init__(self, in_channels: int, task_channels: dict[str, int], genotype: dict[str, dict[str, str]],
                 head_channels: int | None = None):
        super().__init__()
        self.tasks = list(task_channels)
        out = head_channels or in_channels // 4
        self.bottleneck = nn.ModuleDict({t: ConvBNAct(in_channels, out, 3) for t in self.tasks})
        self.aux_tasks = label_tasks(genotype)
        self.aux_conv = nn.ModuleDict({t: ConvBNAct(in_channels, in_channels) for t in self.aux_tasks})
        self.aux_logits = nn.ModuleDict({t: logits_conv(in_channels, aux_channels(t, task_channels[t]))
                                         for t in self.aux_tasks})
        self.atrc_module = ATRCModule(self.tasks, genotype, out, out // 2)
        self.final_logits = nn.ModuleDict({t: logits_conv(out, c) for t, c in task_channels.items()})

    def forward(self, feats: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Final and initial logits at the finest level's resolution."""
        x = resize_concat(feats)
        task_feats = {t: self.bottleneck[t](x) for t in self.tasks}
        detached = x.detach()  # the release: no gradient from the initial predictions into the backbone
        initial = {t: self.aux_logits[t](self.aux_conv[t](detached)) for t in self.aux_tasks}
        distilled = self.atrc_module(task_feats, {t: spatial_softmax(p) for t, p in initial.items()})
        return {t: self.final_logits[t](distilled[t]) for t in self.tasks}, initial


class ATRC(nn.Module):
    def __init__(self, backbone: nn.Module, head: ATRCHead, centroids: torch.Tensor):
        super().__init__()
        self.backbone, self.head = backbone, head
        # Read by the engine: the initial predictions of depth/normals/edge are bins/clusters/2 classes.
        self.aux_losses = {"initial": aux_losses(head.aux_tasks, centroids)}

    def forward(self, images: torch.Tensor) -> dict:
        size = images.shape[-2:]
        final, initial = self.head(self.backbone(images))
        aux = {"initial": {t: upsample_to(p, size) for t, p in initial.items()}} if initial else {}
        return {"final": {t: upsample_to(p, size) for t, p in final.items()}, "aux": aux}


def check_backbone(backbone: nn.Module) -> None:
    strides = [int(s) for s in getattr(backbone, "strides", [])]
    if strides != PYRAMID_STRIDES:
        name = getattr(backbone, "name", type(backbone).__name__)
        raise ValueError(f"method 'atrc' needs a 4-level pyramid with strides {PYRAMID_STRIDES} (HRNet, ResNet, Swin: "
                         f"its contexts run on the stride-4 concatenation of all levels); backbone '{name}' has "
                         f"strides {strides or 'unknown'}")


@register_method("atrc")
def build_atrc(task_channels, backbone, cfg):
    """cfg: ``genotype`` (published name or mapping target → source → context; default: the search
    published for the run's tasks on its backbone, else on HRNet-18), or ``context`` (one kind for all pairs);
    ``normals_centroids`` (nyud, pascal: clusters for the normals' initial prediction, default nyud);
    ``head_channels`` (default ΣC/4, as released)."""
    cfg = check_cfg("atrc", cfg, OPTIONS)
    check_backbone(backbone)
    task_channels = dict(task_channels)
    genotype = resolve(list(task_channels), cfg.get("genotype"), cfg.get("context"), getattr(backbone, "name", None))
    centroids = load_centroids(cfg.get("normals_centroids", "nyud"))
    head_channels = cfg.get("head_channels")
    if head_channels is not None and (not isinstance(head_channels, int) or head_channels < 2):
        raise ValueError(f"method 'atrc': head_channels must be an integer ≥ 2, got {head_channels!r}")
    head = ATRCHead(sum(backbone.channels), task_channels, genotype, head_channels)
    return ATRC(backbone, head, centroids)


build_atrc.cfg_keys = OPTIONS  # checked against the recipe before any run (mtbench.recipe_check)
