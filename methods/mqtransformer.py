"""MQTransformer (``mqt``): Xu et al. 2022, "Multi-Query Transformer for Multi-Task Dense Prediction".

Re-implemented from the released head, ``yangyangxu0/MQTransformer`` ``src/model/heads/mqformer_head.py``
(ATRC fork), module by module and with the released names where they exist, so that a reader can check
it line against line. Pipeline: backbone levels → stride 4, concatenated → per task a per-pixel linear
to ``embed_dim`` → per block (released: one block) per-task learned queries → shared query encoder →
cross-task query self-attention → shared pixel decoder → GELU → per task ConvBNReLU 3×3 + 1×1 logits →
bilinear to the input size. Every deviation from the released code is listed in ``methods/README.md``.

Two registered names, which differ only in the decoder's second attention:
  ``mqt`` (the released computation): ``nn.MultiheadAttention`` (a sequence-first module) is given the
      batch-first ``(B, HW, C)`` map, so each pixel attends to the same pixel of the other images that
      share its forward pass, and its residual is the decoder input ``x``, not the cross-attention
      output. The released recipe runs one image per GPU (global batch 8 on 8 GPUs, in training and
      validation), where this attention sees one image: a per-pixel linear map whose query/key weights
      get zero gradient. ``batch_attn_images`` (default 1) reproduces that per-GPU batch whatever the
      process layout here: the attention runs over consecutive groups of that many images (``None``: the
      whole per-device batch, as the released code does with any other GPU count).
  ``mqt_spatial`` (mtbench's variant, not in the release): a multi-head self-attention among the pixels of
      the same image, in non-overlapping ``window_size``² windows (default 8) of the stride-4 map, padded
      keys masked, no position term, residual from the cross-attention output. It uses an ``AnyAttention``
      as ``attn2``, a module the release builds and never calls. The release's dead code does not specify
      this design: its never-called ``rel_pos`` is a ``FullRelPos`` for 4×4 windows with a relative-position
      bias, and its commented-out ``attn2`` call has no window partition. It exists so that a benchmark can
      show an MQT whose decoder attends within the image; its numbers are not the paper's.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from mtbench.layers import ConvBNReLU, logits_conv, resize_concat, upsample_to
from mtbench.registry import register_method

COMMON = {
    "embed_dim": 256,             # released: 256
    "num_queries": 64,            # per task; released: 64
    "num_heads": 4,               # released: num_heads[0] = 4 (the other entries of its tuple are unused)
    "num_blocks": 1,              # released: enc_dec_times = 1 (each block has its own queries)
    "encoder_layers": 1,          # query-encoder layers per block; released: 1 (``encoder1``)
    "decoder_layers": 1,          # pixel-decoder layers per block; released: 1 (``decoder1``)
    "head_channels": None,        # ConvBNReLU width; released: embed_dim // 4 = 64
    "dead_modules": False,        # add the released unused modules (exact parameter / FLOP parity)
    "drop_path_encoder": 0.1,     # released Encoder hard-codes 0.1 (ignores the 0.5 it is given)
    "drop_path_cross_task": 0.5,  # released drop_path_rate=0.5 of the cross-task attention block
    "drop_path_decoder": 0.1,
    "attn_drop_cross_task": 0.1,  # dropout on the cross-task attention weights
}
# Per registered name: its decoder self-attention and the options only it has.
VARIANTS = {
    # released recipe: batch 8 in total on 8 GPUs, so the batch-axis attention sees 1 image (train and val)
    "mqt": ("released", {"batch_attn_images": 1}),
    "mqt_spatial": ("spatial", {"window_size": 8}),  # window side on the stride-4 map
}
DEFAULTS = {name: {**COMMON, **extra} for name, (_, extra) in VARIANTS.items()}


def _drop_path(p: float) -> nn.Module:
    from timm.layers import DropPath

    return DropPath(p) if p > 0 else nn.Identity()


class Mlp(nn.Sequential):
    """Released ``Mlp``: pre-LayerNorm, fc1, GELU, fc2 (its dropout is 0 everywhere MQT uses it)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(OrderedDict(norm=nn.LayerNorm(dim), fc1=nn.Linear(dim, hidden), act=nn.GELU(),
                                     fc2=nn.Linear(hidden, dim)))


def _add_pos(t: torch.Tensor, pos: torch.Tensor | None, heads: int) -> torch.Tensor:
    """Released ``apply_pos``: ``pos`` is (B, N, 1, C/heads), one vector per token added to every head's slice."""
    if pos is None:
        return t
    b, n, c = t.shape
    return (t.view(b, n, heads, c // heads) + pos).view(b, n, c)


class AnyAttention(nn.Module):
    """Released ``AnyAttention``: positions added *before* the q/k/v LayerNorms, no q/k/v bias, output
    projection with bias, scale head_dim^-½. Explicit matmuls (not SDPA) so torch's flop counter sees them."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.proj = nn.Linear(dim, dim)
        self.heads, self.scale = heads, (dim / heads) ** -0.5

    def forward(self, q, k, v, qpos=None, kpos=None, key_mask=None):
        q = self.to_q(self.norm_q(_add_pos(q, qpos, self.heads)))
        k = self.to_k(self.norm_k(_add_pos(k, kpos, self.heads)))
        v = self.to_v(self.norm_v(v))
        b, n, c = q.shape
        q, k, v = (t.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2) for t in (q, k, v))
        attn = (q @ k.transpose(-2, -1)) * self.scale
        if key_mask is not None:  # (b, 1, 1, m), True = padding
            attn = attn.masked_fill(key_mask, float("-inf"))
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def window_self_attention(attn: AnyAttention, x: torch.Tensor, hw: tuple[int, int], ws: int) -> torch.Tensor:
    """``attn`` within non-overlapping ws×ws windows of the (B, H·W, C) map; padded keys are masked."""
    (h, w), (b, _, c) = hw, x.shape
    ph, pw = (-h) % ws, (-w) % ws
    x = F.pad(x.view(b, h, w, c), (0, 0, 0, pw, 0, ph))
    nh, nw = (h + ph) // ws, (w + pw) // ws
    win = x.view(b, nh, ws, nw, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
    mask = None
    if ph or pw:
        pad = torch.ones(h + ph, w + pw, dtype=torch.bool, device=x.device)
        pad[:h, :w] = False
        mask = pad.view(nh, ws, nw, ws).permute(0, 2, 1, 3).reshape(1, -1, 1, 1, ws * ws)
        mask = mask.expand(b, -1, -1, -1, -1).reshape(-1, 1, 1, ws * ws)
    out = attn(win, win, win, key_mask=mask)
    out = out.view(b, nh, nw, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h + ph, w + pw, c)
    return out[:, :h, :w].reshape(b, h * w, c)


class Reasoning(nn.Module):
    """Released ``SimpleReasoning``: x + W·LN(x), one channel linear applied to every query (the released
    ``Conv1d(dim, dim, 1, bias=False)`` on (B, C, N), written as the equivalent Linear)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm, self.linear = nn.LayerNorm(dim), nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        return x + self.linear(self.norm(x))


class Encoder(nn.Module):
    """Queries (+ qpos) cross-attend to one task's pixels, then reasoning and an MLP (ratio 1)."""

    def __init__(self, dim: int, heads: int, drop_path: float):
        super().__init__()
        self.enc_attn, self.reason, self.enc_ffn = AnyAttention(dim, heads), Reasoning(dim), Mlp(dim, dim)
        self.drop_path = _drop_path(drop_path)

    def forward(self, feats, parts, qpos):
        parts = parts + self.drop_path(self.enc_attn(parts, feats, feats, qpos=qpos))
        parts = self.reason(parts)
        return parts + self.drop_path(self.enc_ffn(parts))


class RelPosParams(nn.Module):
    """Only the parameters of the released, never-called ``FullRelPos(4, 4, head_dim)`` (dead_modules)."""

    def __init__(self, size: int, head_dim: int):
        super().__init__()
        self.rel_emb_h = nn.Parameter(torch.zeros(2 * size - 1, head_dim // 2))
        self.rel_emb_w = nn.Parameter(torch.zeros(2 * size - 1, head_dim // 2))
        for p in (self.rel_emb_h, self.rel_emb_w):
            nn.init.trunc_normal_(p, std=0.02)


def batch_axis_attention(mhsa: nn.MultiheadAttention, x: torch.Tensor, images: int | None) -> torch.Tensor:
    """The released call ``mhsa(x, x, x)`` of a sequence-first module on a batch-first (B, HW, C) ``x``:
    pixel p of image i attends to pixel p of the other images, over groups of ``images`` consecutive
    images (the released per-GPU batch; None = all B). Groups are stacked along the module's batch axis."""
    b, n, c = x.shape
    g = b if images is None else min(images, b)
    if b % g:
        return torch.cat([mhsa(part, part, part)[0] for part in x.split(g)])
    xg = x.view(b // g, g, n, c).transpose(0, 1).reshape(g, b // g * n, c)
    return mhsa(xg, xg, xg)[0].view(g, b // g, n, c).transpose(0, 1).reshape(b, n, c)


class Decoder(nn.Module):
    """Pixels cross-attend to their task's queries (+ kpos), FFN ×3, then the second attention (``released``:
    across the images of a group, ``spatial``: within windows of one image; see the module docstring)
    and another FFN ×3."""

    def __init__(self, dim: int, heads: int, drop_path: float, mode: str, c: dict):
        super().__init__()
        self.mode, self.window, self.images = mode, c.get("window_size"), c.get("batch_attn_images")
        self.attn1 = AnyAttention(dim, heads)
        if mode == "spatial" or c["dead_modules"]:
            self.attn2 = AnyAttention(dim, heads)  # used by "spatial"; dead (parity only) otherwise
        if c["dead_modules"]:
            self.rel_pos = RelPosParams(4, dim // heads)  # released patch_size=4
        self.ffn1, self.ffn2 = Mlp(dim, 3 * dim), Mlp(dim, 3 * dim)
        self.drop_path = _drop_path(drop_path)
        if mode == "released":
            self.mhsa = nn.MultiheadAttention(dim, heads)  # sequence-first, as released

    def forward(self, x, parts, kpos, hw):
        out = x + self.drop_path(self.attn1(x, parts, parts, kpos=kpos))
        out = out + self.drop_path(self.ffn1(out))
        if self.mode == "released":  # residual from the decoder input x, as released
            outs = x + self.drop_path(batch_axis_attention(self.mhsa, out, self.images))
        else:
            outs = out + self.drop_path(window_self_attention(self.attn2, out, hw, self.window))
        return outs + self.drop_path(self.ffn2(outs))


class QueryBlock(nn.Module):
    """Released ``parts_query_encoder_decoder``: per-task queries, the shared encoder, cross-task query
    attention, the shared decoder, GELU."""

    def __init__(self, n_tasks: int, c: dict):
        super().__init__()
        dim, heads, n = c["embed_dim"], c["num_heads"], c["num_queries"]
        self.num_queries, self.heads = n, heads
        self.rpn_tokens = nn.ParameterList([nn.Parameter(torch.zeros(1, n, dim)) for _ in range(n_tasks)])
        self.rpn_qpos = nn.ParameterList([nn.Parameter(torch.zeros(1, n, 1, dim // heads)) for _ in range(n_tasks)])
        self.rpn_kpos = nn.ParameterList([nn.Parameter(torch.zeros(1, n, 1, dim // heads)) for _ in range(n_tasks)])
        for p in [*self.rpn_tokens, *self.rpn_qpos, *self.rpn_kpos]:
            nn.init.trunc_normal_(p, std=0.02)  # released: kaiming_uniform_, then overwritten by this
        self.encoder = nn.ModuleList(Encoder(dim, heads, c["drop_path_encoder"]) for _ in range(c["encoder_layers"]))
        self.mhsa_1 = nn.MultiheadAttention(dim, heads, dropout=c["attn_drop_cross_task"])
        self.drop_path = _drop_path(c["drop_path_cross_task"])
        self.norm_layer, self.ffn_mlp = nn.LayerNorm(dim), Mlp(dim, dim)
        self.decoder = nn.ModuleList(
            Decoder(dim, heads, c["drop_path_decoder"], c["decoder_self_attn"], c) for _ in range(c["decoder_layers"]))
        self.act_layer = nn.GELU()

    def forward(self, feats: list[torch.Tensor], hw: tuple[int, int]) -> list[torch.Tensor]:
        parts, b = [], feats[0].shape[0]
        # repeat, not expand: an expand() view of a parameter made under no_grad is rejected as a
        # submodule input by torch's module tracker (FlopCounterMode). Positions broadcast instead.
        for x, tok, qpos in zip(feats, self.rpn_tokens, self.rpn_qpos):
            p = tok.repeat(b, 1, 1)
            for layer in self.encoder:
                p = layer(x, p, qpos)
            parts.append(p)
        # Cross-task attention, sequence-first as released. DropPath therefore draws its mask along the
        # first axis: each of the T·N query tokens is dropped independently (shared across the batch).
        cat = torch.cat(parts, dim=1).transpose(0, 1)
        cat = cat + self.drop_path(self.mhsa_1(cat, cat, cat)[0])  # no pre-norm, as released
        cat = cat + self.drop_path(self.ffn_mlp(self.norm_layer(cat)))  # LN, then the Mlp's own LN
        parts = torch.split(cat.transpose(0, 1), self.num_queries, dim=1)
        out = []
        for x, p, kpos in zip(feats, parts, self.rpn_kpos):
            for layer in self.decoder:
                x = layer(x, p, kpos, hw)
            out.append(self.act_layer(x))
        return out


class PatchEmbed(nn.Module):
    """The released head's ``patch_embed`` (4×4/4 conv + LN): run on every task's features and discarded."""

    def __init__(self, dim: int):
        super().__init__()
        self.projection, self.norm = nn.Conv2d(dim, dim, 4, stride=4), nn.LayerNorm(dim)

    def forward(self, x):
        x = self.projection(F.pad(x, (0, (-x.shape[-1]) % 4, 0, (-x.shape[-2]) % 4)))
        return self.norm(x.flatten(2).transpose(1, 2))


class MQTransformer(nn.Module):
    def __init__(self, backbone: nn.Module, task_channels: dict[str, int], cfg: dict):
        super().__init__()
        self.backbone, self.tasks, self.cfg = backbone, list(task_channels), dict(cfg)
        dim, hidden = cfg["embed_dim"], cfg["head_channels"] or cfg["embed_dim"] // 4
        self.linears = nn.ModuleList(nn.Linear(sum(backbone.channels), dim) for _ in self.tasks)
        self.blocks = nn.ModuleList(QueryBlock(len(self.tasks), cfg) for _ in range(cfg["num_blocks"]))
        self.bottleneck = nn.ModuleDict({t: ConvBNReLU(dim, hidden, 3) for t in self.tasks})
        self.final_logits = nn.ModuleDict({t: logits_conv(hidden, c) for t, c in task_channels.items()})
        self.patch_embed = PatchEmbed(dim) if cfg["dead_modules"] else None
        # The released unused modules run (patch_embed) or sit (attn2, rel_pos) without feeding the loss.
        self.find_unused_parameters = bool(cfg["dead_modules"])
        self.record_notes = [_note(cfg)]  # the engine copies these into the run record; leaderboards show them

    def forward(self, images):
        x = resize_concat(self.backbone(images)).permute(0, 2, 3, 1)  # (B, h, w, ΣC) at stride 4
        b, h, w, _ = x.shape
        feats = [lin(x).reshape(b, h * w, -1) for lin in self.linears]
        if self.patch_embed is not None:  # released: computed, then never used
            for f in feats:
                self.patch_embed(f.transpose(1, 2).reshape(b, -1, h, w))
        for block in self.blocks:
            feats = block(feats, (h, w))
        size = images.shape[-2:]
        final = {}
        for t, f in zip(self.tasks, feats):
            f = f.transpose(1, 2).reshape(b, -1, h, w)
            final[t] = upsample_to(self.final_logits[t](self.bottleneck[t](f)), size)
        return {"final": final, "aux": {}}


def _note(c: dict) -> str:
    if c["decoder_self_attn"] == "spatial":
        return (f"mtbench's variant, not the released model: the decoder attends among pixels of one image in "
                f"{c['window_size']}x{c['window_size']} windows, where the release attends across the images of a batch")
    group = c["batch_attn_images"]
    scope = "the whole per-device batch" if group is None else f"groups of {group} image{'s' * (group > 1)}"
    return (f"released decoder: its self-attention runs across the images of a batch, here over {scope} in training "
            f"and evaluation (released recipe: 1 image per GPU, global batch 8 on 8 GPUs, validation batch 1 per GPU)")


def resolve_cfg(cfg: dict | None, name: str = "mqt") -> dict:
    cfg = dict(cfg or {})
    defaults = DEFAULTS[name]
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        hint = (" (the decoder's self-attention is chosen by the method name: mqt = released, "
                "mqt_spatial = windowed)") if "decoder_self_attn" in unknown else ""
        raise ValueError(f"unknown {name} option(s) {unknown}; valid options: {', '.join(sorted(defaults))}{hint}")
    c = {**defaults, **cfg, "decoder_self_attn": VARIANTS[name][0]}
    if c["embed_dim"] % c["num_heads"] or (c["embed_dim"] // c["num_heads"]) % 2:
        raise ValueError(f"{name} embed_dim ({c['embed_dim']}) must split into num_heads ({c['num_heads']}) "
                         f"heads of even width")
    positive = ["num_queries", "num_blocks", "encoder_layers", "decoder_layers", "window_size"]
    if c.get("batch_attn_images") is not None:
        positive.append("batch_attn_images")
    for key in positive:
        if key in c and (not isinstance(c[key], int) or isinstance(c[key], bool) or c[key] < 1):
            raise ValueError(f"{name} {key} must be a positive integer" +
                             (" or null (the whole per-device batch)" if key == "batch_attn_images" else "") +
                             f", got {c[key]!r}")
    return c


@register_method("mqt")
def build_mqt(task_channels: dict[str, int], backbone: nn.Module, cfg: dict) -> MQTransformer:
    return MQTransformer(backbone, task_channels, resolve_cfg(cfg, "mqt"))


@register_method("mqt_spatial")
def build_mqt_spatial(task_channels: dict[str, int], backbone: nn.Module, cfg: dict) -> MQTransformer:
    return MQTransformer(backbone, task_channels, resolve_cfg(cfg, "mqt_spatial"))


build_mqt.cfg_keys = tuple(DEFAULTS["mqt"])  # checked against the recipe before any run (mtbench.recipe_check)
build_mqt_spatial.cfg_keys = tuple(DEFAULTS["mqt_spatial"])


def dead_parameter_names(model: MQTransformer) -> set[str]:
    """Names of the parameters that never get a gradient by design (the released unused modules)."""
    dead_prefixes = ["patch_embed."]
    for i, blk in enumerate(model.blocks):
        for j, dec in enumerate(blk.decoder):
            dead_prefixes.append(f"blocks.{i}.decoder.{j}.rel_pos.")
            if dec.mode != "spatial":
                dead_prefixes.append(f"blocks.{i}.decoder.{j}.attn2.")
    return {n for n, _ in model.named_parameters() if n.startswith(tuple(dead_prefixes))}
