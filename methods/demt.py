"""DeMT (``demt``): Xu, Yang, Zhang, "DeMT: Deformable Mixer Transformer for Multi-Task Learning of Dense
Prediction", AAAI 2023.

Re-implemented from the released head, ``yangyangxu0/DeMT`` ``src/model/heads/demt_head.py`` (``DemtHead``,
``DefMixer``, ``ChlSpl``, ``Offset``) with its ATRC ``BaseHead``, keeping the released module names so that
its state-dict keys match (see methods/README.md). Pipeline: backbone levels bilinearly to the finest one
(stride 4) and concatenated → ``Linear(ΣC → 256)`` + LayerNorm → per task a *deformable mixer* (1×1 conv,
GELU, BN, then a residual per-channel deformable 1×1 conv, GELU, BN) → *task interaction*: one multi-head
attention over the concatenated tokens of all tasks + Linear/LayerNorm → per task a *task query* attention
(the task's tokens attend to the interacted tokens) + Linear/LayerNorm, residual → per task ConvBNReLU 3×3
(256 → ΣC/8) and a 1×1 logits conv → bilinear to the input size.

Both attentions are released as ``nn.MultiheadAttention`` modules (sequence-first) called on batch-first
tensors, under torch 1.7 (the release's version). Their sequence axis is therefore the *batch*:
  task interaction: (B, T·HW, C): each (task, pixel) token attends to the same token of the other images;
  task query: keys (B, T·HW, C), queries (B, HW, C); torch ≤ 1.8 reads the keys as (B·T, HW, C) (torch ≥ 1.9
      raises), so at each pixel a task's token attends to every task's token of every image at that pixel.
The released recipe runs one image per GPU (global batch 8 on 8 GPUs, validation too), so in its training
and its published numbers the interaction is a per-token linear map (its query/key weights get zero
gradient) and the task query attends over the T tasks at the same pixel of the same image.
``batch_attn_images`` (default 1) reproduces that per-GPU batch whatever the process layout here: both
attentions run over consecutive groups of that many images (``None``: the whole per-device batch, as the
released code does with any other GPU count, where an image's prediction depends on its batch-mates).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from methods._demt_deform import ChannelDeformConv
from mtbench.layers import ConvBNReLU, logits_conv, resize_concat, upsample_to
from mtbench.registry import register_method

DEFAULTS = {
    "embed_dim": 256,           # released: dim_ = 256
    "num_heads": 4,             # released: 4 in both attentions
    "head_channels": None,      # bottleneck width; released: sum of the backbone's channels // 8
    "mixer_depth": 1,           # deformable-mixer blocks per task; released: DefMixer(depth=1)
    "batch_attn_images": 1,     # images per attention group; released recipe: 1 per GPU (None = whole batch)
}
PUBLISHED_BACKBONES = ("swin_t", "swin_s", "swin_b", "swin_l", "hrnet_w18_small_v2")


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


class DefMixer(nn.Module):
    """Released ``DefMixer``: channel mixing (1×1 conv, GELU, BN), then the spatial deformable operator with a
    residual (per-channel deformable 1×1 conv, GELU, BN)."""

    def __init__(self, dim: int, depth: int):
        super().__init__()
        self.blocks = nn.Sequential(*[nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=1), nn.GELU(), nn.BatchNorm2d(dim),
            Residual(nn.Sequential(ChannelDeformConv(dim), nn.GELU(), nn.BatchNorm2d(dim))),
        ) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(x)


class DeMTHead(nn.Module):
    """Everything after the backbone; ``forward(features, size)`` returns ``{task: logits at size}``."""

    def __init__(self, in_channels: list[int], task_channels: dict[str, int], cfg: dict):
        super().__init__()
        self.tasks, self.images = list(task_channels), cfg["batch_attn_images"]
        dim, heads, n = cfg["embed_dim"], cfg["num_heads"], len(task_channels)
        hidden = cfg["head_channels"] or sum(in_channels) // 8
        self.bottleneck = nn.ModuleDict({t: ConvBNReLU(dim, hidden, 3) for t in self.tasks})
        self.final_logits = nn.ModuleDict({t: logits_conv(hidden, c) for t, c in task_channels.items()})
        self.defor_mixers = nn.ModuleList(DefMixer(dim, cfg["mixer_depth"]) for _ in range(n))
        self.linear1 = nn.Sequential(nn.Linear(sum(in_channels), dim), nn.LayerNorm(dim))
        self.task_fusion = nn.MultiheadAttention(dim, heads)  # sequence-first, as released
        self.smlp = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.smlp2 = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim)) for _ in range(n))
        self.task_querys = nn.ModuleList(nn.MultiheadAttention(dim, heads) for _ in range(n))

    def interact(self, outs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The released attentions on per-task tokens (g, N, C), whose first axis is the attention's sequence
        axis (g images of one group) and second its batch axis (pixels, possibly of several groups)."""
        g, n, c = outs[0].shape
        cat = torch.cat(outs, dim=1)  # (g, T·N, C): the sequence is the g images
        cat = self.smlp(self.task_fusion(cat, cat, cat)[0])
        kv = cat.reshape(g * len(outs), n, c)  # torch 1.7's reading: keys = every (image, task) at each pixel
        return [o + mlp(attn(o, kv, kv)[0])
                for o, attn, mlp in zip(outs, self.task_querys, self.smlp2)]

    def grouped_interact(self, outs: list[torch.Tensor]) -> list[torch.Tensor]:
        """``interact`` over consecutive groups of ``batch_attn_images`` images (the released per-GPU batch),
        the groups stacked along the attention's batch axis."""
        b, n, c = outs[0].shape
        g = b if self.images is None else min(self.images, b)
        if b % g:
            parts = [self.interact(list(chunk)) for chunk in zip(*(o.split(g) for o in outs))]
            return [torch.cat(p) for p in zip(*parts)]
        stacked = [o.view(b // g, g, n, c).transpose(0, 1).reshape(g, b // g * n, c) for o in outs]
        return [o.view(g, b // g, n, c).transpose(0, 1).reshape(b, n, c) for o in self.interact(stacked)]

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        x = resize_concat(features)  # released BaseHead._transform_inputs
        b, _, h, w = x.shape
        x = self.linear1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        outs = [mixer(x).flatten(2).transpose(1, 2) for mixer in self.defor_mixers]  # (B, HW, C) per task
        outs = self.grouped_interact(outs)
        final = {}
        for t, o in zip(self.tasks, outs):
            f = o.transpose(1, 2).reshape(b, -1, h, w)
            final[t] = upsample_to(self.final_logits[t](self.bottleneck[t](f)), size)
        return final


class DeMT(nn.Module):
    def __init__(self, backbone: nn.Module, head: DeMTHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images):
        return {"final": self.head(self.backbone(images), images.shape[-2:]), "aux": {}}


def resolve_cfg(cfg: dict | None) -> dict:
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown demt option(s) {unknown}; valid options: {', '.join(sorted(DEFAULTS))}")
    c = {**DEFAULTS, **cfg}
    for key in ("embed_dim", "num_heads", "mixer_depth", "head_channels", "batch_attn_images"):
        v = c[key]
        if (v is not None or key not in ("head_channels", "batch_attn_images")) and (
                not isinstance(v, int) or isinstance(v, bool) or v < 1):
            null = " or null" if key in ("head_channels", "batch_attn_images") else ""
            raise ValueError(f"demt {key} must be a positive integer{null}, got {v!r}")
    if c["embed_dim"] % c["num_heads"]:
        raise ValueError(f"demt embed_dim ({c['embed_dim']}) must be divisible by num_heads ({c['num_heads']})")
    return c


def check_backbone(backbone: nn.Module) -> None:
    """The head runs at the finest level of a multi-scale pyramid (stride 4 on Swin/HRNet, the published
    backbones); a single-stride backbone (ViT) would put it at 1/16, a model the release never built."""
    strides = list(getattr(backbone, "strides", []))
    if len(strides) < 2 or any(a >= b for a, b in zip(strides, strides[1:])):
        raise ValueError(
            f"method 'demt' needs a multi-scale feature pyramid (levels at increasing strides, e.g. 4, 8, 16, 32); "
            f"backbone '{getattr(backbone, 'name', type(backbone).__name__)}' gives strides {strides}. "
            f"Use a Swin or HRNet backbone (published: {', '.join(PUBLISHED_BACKBONES)}) or a ResNet.")


@register_method("demt")
def build_demt(task_channels: dict[str, int], backbone: nn.Module, cfg: dict) -> DeMT:
    c = resolve_cfg(cfg)
    check_backbone(backbone)
    return DeMT(backbone, DeMTHead(list(backbone.channels), task_channels, c))


build_demt.cfg_keys = tuple(DEFAULTS)  # checked against the recipe before any run (mtbench.recipe_check)
