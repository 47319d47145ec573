"""InvPT (Ye & Xu, ECCV 2022): an inverted-pyramid multi-task transformer decoder.

Re-implements ``TransformerNet`` + ``TransformerDecoder`` + ``InvPT`` of prismformore/Multi-Task-Transformer
(``code/models/``, read at commit 7e0f149; its parameter and FLOP counts equal those measured at 870c6be in
shared/notes/reference-models.md) for any mtbench backbone. What it does, in release order:

1. 1/32 input: the last backbone level resized bilinearly to 1/32. For ViT (every level at stride 16) that
   is the release's trick: the final, LayerNorm-ed ViT tokens downsampled ×0.5. For CNN/Swin the last level
   is already at 1/32 and is used as it is.
2. Per task, a preliminary decoder (two ConvBNReLU 3×3: C → C → ``embed_dim``) and a 1×1 intermediate head;
   the intermediate predictions are deeply supervised (``aux["inter"]``, same losses and weights).
3. Per task, [features, intermediate prediction] → 1×1 conv to D = ``embed_dim + pred_dim`` (576).
4. Three stages at 1/32, 1/16, 1/8 with dims D, D/2, D/4: stages 1, 2 up-embed ×2 and add an encoder skip
   feature; each runs one transformer block with self-attention over all tasks' tokens jointly and fuses
   the previous stage's attention scores (``methods/_invpt_blocks.py``).
5. Each stage's output, LayerNorm-ed jointly over all tasks' channels, is projected to D (stages 1, 2),
   upsampled to 1/4 and summed per task; then ConvBNReLU 3×3 and a 1×1 head per task.

Skip features (``scale_embed``): with a plain ViT the release's mapping, by level index: the 1/16 stage takes
level n-3 (block 12 of ViT-L) through a 3×3 conv, the 1/8 stage level n-4 (block 6) through a stride-2
transposed conv. With a multi-stride backbone each stage takes the level of its own stride (16, 8) through
a 3×3 conv; the stride-4 level is unused. See methods/README.md for deviations and parameter counts.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods._invpt_blocks import InvPTStage, SkipEmbed
from mtbench.layers import ConvBNReLU, upsample_to
from mtbench.registry import register_method

log = logging.getLogger(__name__)

PAD_MULTIPLE = 64  # the 1/32 grid must be even: keys sit at 1/64 in every stage, query grids double
STAGE_STRIDES = (32, 16, 8)
KV_POOL = (2, 4, 8)  # release KERNEL_KV = STRIDE_KV: keys/values at 1/64 in every stage
DEFAULTS = {
    "embed_dim": 512,  # release embed_dim: preliminary-decoder channels
    "pred_dim": 64,  # release PRED_OUT_NUM_CONSTANT: decoder dim = embed_dim + pred_dim = 576
    "num_heads": 2,
    "mlp_ratio": 4.0,
    "keep_unused": False,  # build (and run) the modules the release builds but never uses: parameter parity
}
# Parameter-name prefixes that exist only with keep_unused=True; none of them ever gets a gradient.
UNUSED_PREFIXES = (
    "decoder.scale_embed.stage0.",  # 3×3 conv of ViT block 18 (5.31 M for ViT-L); output discarded
    "decoder.redu_chan.stage0.",  # per-task 1×1 convs at stage 0, never called (1.33 M)
    "decoder.invpt_stages.0.block.attn.fuse_attn.",  # stage 0 has no previous scores to fuse (10)
    "decoder.norm_mt.",  # a final LayerNorm never called (1152)
)


def skip_plan(strides: list[int]) -> tuple[int, list[int]]:
    """(level feeding the 1/32 input, level feeding each stage's skip) for backbone ``strides``."""
    n = len(strides)
    if len(set(strides)) == 1:  # plain ViT: the release's index mapping (4 levels: input 3, skips 2, 1, 0)
        if n < 4:
            raise ValueError(f"InvPT needs 4 feature levels from a single-stride (ViT) backbone, got {n}")
        return n - 1, [n - 2, n - 3, n - 4]
    nearest = [min(range(n), key=lambda i: (abs(math.log2(strides[i] / t)), -strides[i])) for t in STAGE_STRIDES]
    return n - 1, nearest


class InvPTDecoder(nn.Module):
    """Backbone levels → per-task features at 1/4 and intermediate logits at 1/32 (release
    ``TransformerDecoder`` + ``InvPT``; attribute names follow the release)."""

    def __init__(self, task_channels: dict[str, int], channels: list[int], strides: list[int], embed_dim: int,
                 pred_dim: int, num_heads: int, mlp_ratio: float, keep_unused: bool):
        super().__init__()
        self.tasks = list(task_channels)
        self.keep_unused = keep_unused
        T = len(self.tasks)
        d0 = embed_dim + pred_dim
        if d0 % 4 or (d0 // 4) % num_heads:
            raise ValueError(f"InvPT: embed_dim + pred_dim = {d0} must be divisible by 4 * num_heads "
                             f"({4 * num_heads}) so that the stage dims {d0}, {d0 / 2}, {d0 / 4} split into heads")
        self.dims = dims = [d0, d0 // 2, d0 // 4]
        self.input_level, self.skip_levels = skip_plan(strides)
        cin = channels[self.input_level]
        # timm's ViT extractor drops ViT's final LayerNorm; the release applies it to the last level
        # (its decoder input). Counted in the decoder here, in the ViT in the release.
        plain_vit = len(set(strides)) == 1
        self.vit_norm = nn.LayerNorm(cin, eps=1e-6) if plain_vit else None

        self.preliminary_decoder = nn.ModuleDict(
            {t: nn.Sequential(ConvBNReLU(cin, cin), ConvBNReLU(cin, embed_dim)) for t in self.tasks})
        self.intermediate_head = nn.ModuleDict({t: nn.Conv2d(embed_dim, c, 1) for t, c in task_channels.items()})
        self.mix_proj = nn.ModuleDict({t: nn.Conv2d(embed_dim + c, d0, 1) for t, c in task_channels.items()})

        self.scale_embed = nn.ModuleDict()
        for i in range(3) if keep_unused else (1, 2):
            lvl = self.skip_levels[i]
            self.scale_embed[f"stage{i}"] = SkipEmbed(channels[lvl], dims[i], strides[lvl], STAGE_STRIDES[i])

        self.invpt_stages = nn.ModuleList(
            InvPTStage(T, dims[max(i - 1, 0)], dims[i], num_heads, mlp_ratio, KV_POOL[i], up=i > 0,
                       fuse_messages=i > 0 or keep_unused) for i in range(3))
        self.norm_mts = nn.ModuleList(nn.LayerNorm(T * d) for d in dims)
        self.redu_chan = nn.ModuleDict({
            f"stage{i}": nn.ModuleDict({t: nn.Conv2d(dims[i], d0, 1) for t in self.tasks})
            for i in (range(3) if keep_unused else (1, 2))})
        if keep_unused:
            self.norm_mt = nn.LayerNorm(T * dims[-1])
        self.mt_proj = nn.ModuleDict()
        for t in self.tasks:
            self.mt_proj[t] = nn.Sequential(nn.Conv2d(d0, d0, 3, padding=1), nn.BatchNorm2d(d0), nn.ReLU(inplace=True))
            nn.init.trunc_normal_(self.mt_proj[t][0].weight, std=0.02)

    def forward(self, feats: list[torch.Tensor], grid: tuple[int, int]):
        h, w = grid  # the 1/32 grid of the (padded) input
        x = feats[self.input_level]
        if self.vit_norm is not None:
            x = self.vit_norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if x.shape[-2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)

        inter, maps = {}, []
        for t in self.tasks:
            f = self.preliminary_decoder[t](x)
            inter[t] = self.intermediate_head[t](f)
            maps.append(self.mix_proj[t](torch.cat([f, inter[t]], dim=1)))

        fused_size = (8 * h, 8 * w)  # 1/4
        fused: list[torch.Tensor | float] = [0.0] * len(self.tasks)
        scores = None
        for i, stage in enumerate(self.invpt_stages):
            size = (h * 2 ** i, w * 2 ** i)
            src = feats[self.skip_levels[i]]
            if i == 0:
                skip = None
                if self.keep_unused:  # computed and discarded, as in the release (FLOP parity)
                    self.scale_embed["stage0"].proj(src)
            else:
                skip = self.scale_embed[f"stage{i}"](src, size)
            maps, scores = stage(maps, scores, skip)
            joint = self.norm_mts[i](torch.cat(maps, dim=1).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            for j, (t, y) in enumerate(zip(self.tasks, joint.chunk(len(self.tasks), dim=1))):
                if i > 0:
                    y = self.redu_chan[f"stage{i}"][t](y)
                fused[j] = fused[j] + F.interpolate(y, size=fused_size, mode="bilinear", align_corners=False)
        return {t: self.mt_proj[t](f) for t, f in zip(self.tasks, fused)}, inter


class InvPT(nn.Module):
    """Backbone + InvPT decoder + per-task 1×1 heads.

    Any input size: the image is zero-padded at the bottom/right to a multiple of 64 (the release requires
    that and pads its evaluation images to the training size) and every output is cropped back.
    """

    def __init__(self, backbone: nn.Module, task_channels: dict[str, int], embed_dim: int = 512,
                 pred_dim: int = 64, num_heads: int = 2, mlp_ratio: float = 4.0, keep_unused: bool = False):
        super().__init__()
        self.backbone = backbone
        self.find_unused_parameters = keep_unused  # the parity modules run but feed nothing (DDP must know)
        self.decoder = InvPTDecoder(task_channels, list(backbone.channels), list(backbone.strides), embed_dim,
                                    pred_dim, num_heads, mlp_ratio, keep_unused)
        d0 = embed_dim + pred_dim
        self.heads = nn.ModuleDict({t: nn.Conv2d(d0, c, 1) for t, c in task_channels.items()})  # release MLPHead

    def forward(self, images: torch.Tensor):
        H, W = images.shape[-2:]
        Hp, Wp = -(-H // PAD_MULTIPLE) * PAD_MULTIPLE, -(-W // PAD_MULTIPLE) * PAD_MULTIPLE
        if (Hp, Wp) != (H, W):
            images = F.pad(images, (0, Wp - W, 0, Hp - H))
        feats, inter = self.decoder(self.backbone(images), (Hp // 32, Wp // 32))

        def full(x):
            return upsample_to(x, (Hp, Wp))[..., :H, :W]

        return {"final": {t: full(self.heads[t](f)) for t, f in feats.items()},
                "aux": {"inter": {t: full(p) for t, p in inter.items()}}}


@register_method("invpt")
def build_invpt(task_channels, backbone, cfg):
    """cfg keys: see ``DEFAULTS``. Nothing depends on the input size at build time except the backbone
    (ViT's position embedding is built for ``backbone.img_size``)."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"method 'invpt': unknown cfg key(s) {unknown}; valid keys: "
                         + ", ".join(f"{k} (default {v!r})" for k, v in DEFAULTS.items()))
    img_size = getattr(backbone, "img_size", None)
    if img_size and len(set(backbone.strides)) == 1 and any(s % PAD_MULTIPLE for s in img_size):
        log.warning("invpt: ViT backbone built for %s, but InvPT pads inputs to multiples of %d, so the "
                    "position embedding is interpolated at every forward; the release builds ViT for the "
                    "padded size (e.g. 448x576 for NYUD)", tuple(img_size), PAD_MULTIPLE)
    return InvPT(backbone, task_channels, **{**DEFAULTS, **cfg})


build_invpt.cfg_keys = tuple(DEFAULTS)  # checked against the recipe before any run (mtbench.recipe_check)
