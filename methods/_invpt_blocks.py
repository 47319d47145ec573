"""InvPT's decoder stage: up-embedding, joint multi-task self-attention with attention message passing.

Mirrors ``code/models/transformers/invpt.py`` of prismformore/Multi-Task-Transformer (commit 7e0f149) module
for module; only the tensor plumbing is rewritten (plain torch instead of einops). Not a plugin (the
leading underscore keeps the registry from importing it); ``methods/invpt.py`` assembles the model.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def tokens(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-task maps [B, C, h, w] → one token sequence [B, T·h·w, C], tasks one after another (the
    release concatenates on the spatial axis, so attention runs over every task's tokens jointly)."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)


def untokens(x: torch.Tensor, n_tasks: int, h: int, w: int) -> list[torch.Tensor]:
    """Inverse of :func:`tokens`."""
    return [t.transpose(1, 2).reshape(x.shape[0], -1, h, w) for t in x.chunk(n_tasks, dim=1)]


class UpEmbed(nn.Sequential):
    """Release ``UpEmbed``: ×2 bilinear, then two dilated 3×3 ConvBNReLU (patch 3, padding = dilation 2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(cin, cout, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class JointSelfAttention(nn.Module):
    """Release ``SelfAttention`` with q_method='dw_bn', kv_method='avg'.

    Queries: a per-task depthwise 3×3 stride-2 conv + BN (half the stage's resolution). Keys and values:
    a k×k average pool with stride k (``kv_pool``), chosen per stage so that keys always sit at 1/64 of
    the input; that is what lets the previous stage's attention scores, upsampled ×2 along the query
    axes, be fused with the current ones (1×1 conv over [current heads, previous heads]).
    The scale is ``dim ** -0.5`` over the full embedding dim, not per head, as released.
    """

    def __init__(self, n_tasks: int, dim: int, num_heads: int, kv_pool: int, fuse_messages: bool,
                 qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"InvPT stage dim {dim} is not divisible by num_heads={num_heads}")
        self.n_tasks, self.num_heads = n_tasks, num_heads
        self.scale = dim ** -0.5
        self.conv_proj_q = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3, stride=2, padding=1, groups=dim, bias=False), nn.BatchNorm2d(dim))
            for _ in range(n_tasks))
        # The release builds separate (parameter-free) pools for k and v; they compute the same tensor.
        self.kv_pool = nn.AvgPool2d(kv_pool, stride=kv_pool, ceil_mode=True)
        self.proj_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj_k = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        # Stage 0 has no previous scores; the release still builds this conv there (10 unused params).
        self.fuse_attn = nn.Conv2d(2 * num_heads, num_heads, 1) if fuse_messages else None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        return x.view(B, N, self.num_heads, C // self.num_heads).transpose(1, 2)

    def _upsample_scores(self, prev: torch.Tensor, qh: int, qw: int) -> torch.Tensor:
        """Previous scores [B, heads, T·sh·sw, Nk] → [B, heads, T·qh·qw, Nk]: each task's query grid
        bilinearly ×2 (``qh = 2·sh``), the key axis as channels, as the release does."""
        B, Hd, Nq, Nk = prev.shape
        T = self.n_tasks
        sh, sw = qh // 2, qw // 2
        if Nq != T * sh * sw:
            raise RuntimeError(f"attention messages: previous stage has {Nq // T} queries per task, "
                               f"expected {sh}x{sw} (input size not a multiple of 64?)")
        x = prev.view(B, Hd, T, sh, sw, Nk).permute(0, 1, 2, 5, 3, 4).reshape(B * Hd * T, Nk, sh, sw)
        x = F.interpolate(x, size=(qh, qw), mode="bilinear", align_corners=False)
        return x.view(B, Hd, T, Nk, qh * qw).permute(0, 1, 2, 4, 3).reshape(B, Hd, T * qh * qw, Nk)

    def forward(self, maps: list[torch.Tensor], prev_scores: torch.Tensor | None):
        """``maps``: per-task normalised features at the stage resolution. Returns the per-task outputs at
        query resolution and the (fused, pre-softmax) scores passed to the next stage."""
        q_maps = [conv(m) for conv, m in zip(self.conv_proj_q, maps)]
        qh, qw = q_maps[0].shape[-2:]
        kv = tokens([self.kv_pool(m) for m in maps])
        q = self._heads(self.proj_q(tokens(q_maps)))
        k = self._heads(self.proj_k(kv))
        v = self._heads(self.proj_v(kv))
        scores = (q @ k.transpose(-2, -1)) * self.scale
        if prev_scores is not None and self.fuse_attn is not None:
            scores = self.fuse_attn(torch.cat([scores, self._upsample_scores(prev_scores, qh, qw)], dim=1))
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).flatten(2)
        return untokens(self.proj(out), self.n_tasks, qh, qw), scores


class InvPTBlock(nn.Module):
    """Pre-norm transformer block over all tasks' tokens; the attention output (at query resolution) is
    bilinearly upsampled back to the stage resolution before the residual, as released. The release's
    drop path is linspace(0, 0.15, depth=1) = [0.0], i.e. none, so there is none here."""

    def __init__(self, n_tasks: int, dim: int, num_heads: int, mlp_ratio: float, kv_pool: int,
                 fuse_messages: bool):
        super().__init__()
        self.n_tasks = n_tasks
        self.norm1 = nn.LayerNorm(dim)
        self.attn = JointSelfAttention(n_tasks, dim, num_heads, kv_pool, fuse_messages)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, maps: list[torch.Tensor], prev_scores: torch.Tensor | None):
        h, w = maps[0].shape[-2:]
        x = tokens(maps)
        attn_maps, scores = self.attn(untokens(self.norm1(x), self.n_tasks, h, w), prev_scores)
        attn_maps = [F.interpolate(a, size=(h, w), mode="bilinear", align_corners=False) for a in attn_maps]
        x = x + tokens(attn_maps)
        x = x + self.mlp(self.norm2(x))
        return untokens(x, self.n_tasks, h, w), scores


class InvPTStage(nn.Module):
    """One decoder stage: (stages 1, 2) per-task UpEmbed ×2 plus the encoder skip feature, then one
    InvPTBlock. Linear layers get trunc-normal(0.02) init and norms (1, 0), the release's 'trunc_norm'."""

    def __init__(self, n_tasks: int, cin: int, dim: int, num_heads: int, mlp_ratio: float, kv_pool: int,
                 up: bool, fuse_messages: bool):
        super().__init__()
        self.patch_embed = nn.ModuleList(UpEmbed(cin, dim) for _ in range(n_tasks)) if up else None
        self.block = InvPTBlock(n_tasks, dim, num_heads, mlp_ratio, kv_pool, fuse_messages)
        self.apply(_init_trunc_normal)

    def forward(self, maps: list[torch.Tensor], prev_scores: torch.Tensor | None, skip: torch.Tensor | None):
        if self.patch_embed is not None:
            maps = [embed(m) for embed, m in zip(self.patch_embed, maps)]
            if skip is not None:
                if skip.shape[-2:] != maps[0].shape[-2:]:
                    skip = F.interpolate(skip, size=maps[0].shape[-2:], mode="bilinear", align_corners=False)
                maps = [m + skip for m in maps]
        return self.block(maps, prev_scores)


def _init_trunc_normal(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class SkipEmbed(nn.Module):
    """An encoder feature embedded for a decoder stage (the release's ``scale_embed``): a 3×3 conv when
    the source already has the stage's stride, a 3×3 stride-2 transposed conv when it is twice as coarse
    (ViT's stride-16 map for the 1/8 stage); any other ratio (only for unusual backbones) is a 3×3 conv
    followed by a bilinear resize to the stage's grid."""

    def __init__(self, cin: int, cout: int, src_stride: int, dst_stride: int):
        super().__init__()
        if src_stride == 2 * dst_stride:
            self.proj = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        else:
            self.proj = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.proj(x)
        if x.shape[-2:] != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x
