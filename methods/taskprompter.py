"""TaskPrompter (Ye & Xu, ICLR 2023): task prompts that travel through a ViT and read out task features.

Re-implements ``TaskPrompter`` + ``ConvHead`` + ``TaskPrompterWrapper`` of prismformore/Multi-Task-Transformer
(``TaskPrompter/models/transformers/taskprompter.py``, ``models/taskprompter_wrapper.py``, read at commit 870c6be)
on mtbench's timm ViT (``vit_b``, ``vit_l``). TaskPrompter is not a head: it changes every ViT block, so it
runs the backbone's own blocks (their weights, its checkpoint) with the released block computation:

1. T·L learned prompt tokens (L = ``prompt_len``) are put in front of the patch tokens; in every block they
   share the LayerNorms, attention and MLP with the patch tokens (joint spatial self-attention over
   T·L + HW tokens).
2. *Channel prompting*, per block: ``token_trans`` (Linear C → HW) turns each normalised prompt into an
   HW-long query; its products with the normalised patch tokens, summed over each of ``chan_nheads`` spatial
   windows, are a (T, C, windows) channel-affinity map; ``token_trans1`` (HW → C) of that query is added
   to the prompt's attention output.
3. After blocks ``out_indices[:3]`` of the backbone (6/12/18 of ViT-L, 3/6/9 of ViT-B: the release's
   ``select_list``) and after the final LayerNorm, each task reads its features from the block's tokens x:
   x · (its prompt's raw spatial scores, one map per head on that head's channels) + x → 1×1 conv;
   x · (its raw channel affinities, per window) + x → 1×1 conv; both concatenated → ``fea_fuse``
   (1×1, 3×3, BN, GELU, 1×1). The scores are the raw q·k products (before scale and softmax), as released.
4. With ``use_ctr`` (PASCAL): *cross-task reweighting*: each task's features become a sum of all tasks'
   features weighted by a 1×1-conv MLP over the heads of its prompt-to-prompt scores.
5. The four levels are summed per task, upsampled ×4 (stride 4), ``ConvHead`` (3×3 conv, BN, GELU, 1×1)
   and bilinearly resized to the input size.

The prompt-to-pixel ``token_trans`` layers have HW outputs: the model is built for one token grid, the
backbone's ``img_size`` (the release's TRAIN.SCALE: 448×576 NYUD, 512×512 PASCAL). Smaller inputs are zero-padded
at the bottom/right to it and the outputs cropped back; larger ones are refused. See methods/README.md.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mtbench.registry import register_method

DEFAULTS = {  # configs/nyud/nyud_vitLp16_taskprompter.yml; the PASCAL recipes set their own
    "embed_dim": 768,  # release p.embed_dim: width of the per-level spatial/channel task features
    "final_embed_dim": 768,  # release p.final_embed_dim: width of the fused task features and heads
    "prompt_len": 1,  # prompt tokens per task
    "chan_nheads": 16,  # channel-prompt windows (a square number: sqrt × sqrt windows of the token grid)
    "use_ctr": False,  # cross-task reweighting (the PASCAL configs)
    "keep_unused": False,  # build and run the last block's token_trans1 (its output is discarded): param parity
}


class ChannelPrompt(nn.Module):
    """The two linears the release adds to each ViT ``Attention`` (same names)."""

    def __init__(self, dim: int, pixels: int, with_out: bool = True):
        super().__init__()
        self.token_trans = nn.Linear(dim, pixels)
        self.token_trans1 = nn.Linear(pixels, dim) if with_out else None


def _task_decoder(tasks, embed_dim, tar_dim, final_dim, heads, use_ctr):
    """One level's per-task 1×1 decoders, fusion and (PASCAL) cross-task reweighting, release layouts."""
    level = nn.Module()
    level.fea_decode_spa = nn.ModuleDict({t: nn.Sequential(nn.Conv2d(embed_dim, tar_dim, 1)) for t in tasks})
    level.fea_decode_chan = nn.ModuleDict({t: nn.Sequential(nn.Conv2d(embed_dim, tar_dim, 1)) for t in tasks})
    level.fea_fuse = nn.ModuleDict({t: nn.Sequential(
        nn.Conv2d(2 * tar_dim, final_dim, 1), nn.Conv2d(final_dim, final_dim, 3, padding=1),
        nn.BatchNorm2d(final_dim), nn.GELU(), nn.Conv2d(final_dim, final_dim, 1)) for t in tasks})
    if use_ctr:
        level.ctr_attn_conv = nn.ModuleDict({t: nn.Sequential(
            nn.Conv2d(heads, heads, 1), nn.GELU(), nn.Conv2d(heads, 1, 1)) for t in tasks})
    return level


class ConvHead(nn.Module):
    """Release ``ConvHead``: 3×3 conv (trunc-normal 0.02), BN, GELU, 1×1 prediction."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.mt_proj = nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1), nn.BatchNorm2d(cin), nn.GELU())
        nn.init.trunc_normal_(self.mt_proj[0].weight, std=0.02)
        self.linear_pred = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.linear_pred(self.mt_proj(x))


class TaskPrompter(nn.Module):
    """mtbench ViT backbone + task prompts + per-level task read-out + ConvHeads."""

    def __init__(self, backbone: nn.Module, task_channels: dict[str, int], embed_dim: int = 768,
                 final_embed_dim: int = 768, prompt_len: int = 1, chan_nheads: int = 16, use_ctr: bool = False,
                 keep_unused: bool = False):
        super().__init__()
        vit = backbone.body.model
        self.backbone = backbone
        self.tasks = list(task_channels)
        self.keep_unused = keep_unused
        self.find_unused_parameters = keep_unused  # the last token_trans1 runs but feeds nothing
        self.prompt_len, self.use_ctr = prompt_len, use_ctr
        C = self.dim = vit.embed_dim
        self.num_heads = vit.blocks[0].attn.num_heads
        gh, gw = vit.patch_embed.grid_size
        self.grid, self.patch = (gh, gw), vit.patch_embed.patch_size[0]
        self.pixels = gh * gw
        self.windows = int(round(math.sqrt(chan_nheads)))
        self.select = [int(i) for i in backbone.body.out_indices[:-1]]
        nT = len(self.tasks) * prompt_len
        # The release's ViT has no class token (its position table keeps the class slot, unused); timm's does.
        vit.cls_token = None
        self.vit_norm = nn.LayerNorm(C, eps=1e-6)  # ViT's final norm: timm's feature extractor drops it

        self.task_prompts = nn.Parameter(torch.empty(nT, C))
        nn.init.trunc_normal_(self.task_prompts, mean=1.0, std=1.0, a=-2.0, b=2.0)  # timm's absolute bounds
        last = len(vit.blocks) - 1
        self.chan_prompt = nn.ModuleList(ChannelPrompt(C, self.pixels, with_out=i < last or keep_unused)
                                         for i in range(len(vit.blocks)))
        for m in self.chan_prompt.modules():
            if isinstance(m, nn.Linear):  # the release's _init_vit_weights
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        heads = self.num_heads * prompt_len
        self.levels = nn.ModuleList(_task_decoder(self.tasks, C, embed_dim, final_embed_dim, heads, use_ctr)
                                    for _ in range(len(self.select) + 1))
        self.heads = nn.ModuleDict({t: ConvHead(final_embed_dim, c) for t, c in task_channels.items()})

    # ------------------------------------------------------------------------------------------ blocks
    def _block(self, i: int, blk: nn.Module, x: torch.Tensor, prompts: torch.Tensor):
        """One ViT block on [prompts, x] with channel prompting; returns x, prompts, raw spatial scores of
        the prompt rows (B, heads, nT, nT + HW) and raw channel affinities (B, nT, C, wy, wx)."""
        attn, B, nT = blk.attn, x.shape[0], prompts.shape[1]
        xn, pn = blk.norm1(x), blk.norm1(prompts)
        tokens = torch.cat([pn, xn], dim=1)
        N, C, H = tokens.shape[1], self.dim, attn.num_heads
        q, k, v = attn.qkv(tokens).reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        spa = q[:, :, :nT] @ k.transpose(-2, -1)  # raw prompt-row scores: what the read-out uses
        drop = attn.attn_drop.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=attn.scale)
        out = attn.proj_drop(attn.proj(attn.norm(out.transpose(1, 2).reshape(B, N, C))))
        p_attn, x_attn = out[:, :nT], out[:, nT:]

        # channel prompting: per window, prompt query (HW long) against every channel of the patch tokens
        cp = self.chan_prompt[i]
        qc = cp.token_trans(pn)  # (B, nT, HW)
        (gh, gw), n = self.grid, self.windows
        qc_w = qc.reshape(B, nT, n, gh // n, n, gw // n)
        x_w = xn.reshape(B, n, gh // n, n, gw // n, C)
        chan = torch.einsum("btiajd,biajdc->btcij", qc_w, x_w)  # raw affinities (B, nT, C, wy, wx)

        x = x + blk.drop_path1(blk.ls1(x_attn))
        x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        if cp.token_trans1 is not None:  # absent in the last block: its prompts are never read again
            p_attn = p_attn + cp.token_trans1(qc)
            prompts = prompts + blk.drop_path1(blk.ls1(p_attn))
            prompts = prompts + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(prompts))))
        return x, prompts, spa, chan

    # --------------------------------------------------------------------------------------- read-out
    def _read_out(self, level: nn.Module, x: torch.Tensor, spa: torch.Tensor, chan: torch.Tensor):
        """Release ``cal_task_feature``: task features at the token grid from one level's scores."""
        B, (gh, gw), L, nT = x.shape[0], self.grid, self.prompt_len, spa.shape[2]
        x = x.transpose(1, 2).reshape(B, self.dim, gh, gw)
        n = self.windows
        feats = {}
        for j, t in enumerate(self.tasks):
            s = spa[:, :, j * L:(j + 1) * L, nT:].reshape(B, -1, gh, gw)  # (B, heads·L, gh, gw)
            s = s.repeat_interleave(self.dim // s.shape[1], dim=1)  # head h weighs its own channels
            f_spa = level.fea_decode_spa[t](s * x + x)
            c = chan[:, j].repeat_interleave(gh // n, dim=-2).repeat_interleave(gw // n, dim=-1)
            f_chan = level.fea_decode_chan[t](c * x + x)
            feats[t] = level.fea_fuse[t](torch.cat([f_spa, f_chan], dim=1))
        if self.use_ctr:  # cross-task reweighting from the prompt-to-prompt scores
            weights = {t: level.ctr_attn_conv[t](spa[:, :, j:j + 1, :nT]) for j, t in enumerate(self.tasks)}
            feats = {t: sum(weights[t][..., j:j + 1] * feats[s] for j, s in enumerate(self.tasks))
                     for t in self.tasks}
        return feats

    def forward(self, images: torch.Tensor):
        H, W = images.shape[-2:]
        Hp, Wp = self.grid[0] * self.patch, self.grid[1] * self.patch
        if H > Hp or W > Wp:
            raise ValueError(f"taskprompter: input {H}x{W} is larger than the {Hp}x{Wp} its prompts were built "
                             f"for (token_trans maps to {self.pixels} tokens); build the backbone for this size")
        if (H, W) != (Hp, Wp):
            images = F.pad(images, (0, Wp - W, 0, Hp - H))
        vit = self.backbone.body.model
        x = vit.patch_embed(images)
        x = x.reshape(x.shape[0], -1, self.dim)  # NHWC (dynamic_img_size) or NLC → NLC
        x = vit.norm_pre(vit.patch_drop(vit.pos_drop(x + vit.pos_embed[:, vit.num_prefix_tokens:])))
        # a copy, not an expand(): a view of a parameter made under no_grad trips torch's module tracker
        # (FlopCounterMode in `bench.py profile`)
        prompts = self.task_prompts[None].repeat(x.shape[0], 1, 1)

        acc = {t: 0.0 for t in self.tasks}
        level = 0
        for i, blk in enumerate(vit.blocks):
            x, prompts, spa, chan = self._block(i, blk, x, prompts)
            if i in self.select:
                for t, f in self._read_out(self.levels[level], x, spa, chan).items():
                    acc[t] = acc[t] + f
                level += 1
        for t, f in self._read_out(self.levels[level], self.vit_norm(x), spa, chan).items():
            acc[t] = acc[t] + f

        out = {t: F.interpolate(self.heads[t](F.interpolate(f, scale_factor=4, mode="bilinear", align_corners=False)),
                                size=(Hp, Wp), mode="bilinear", align_corners=False)[..., :H, :W] for t, f in acc.items()}
        return {"final": out, "aux": {}}


def check_backbone(backbone, chan_nheads: int, prompt_len: int) -> None:
    """A one-line reason why TaskPrompter cannot run on ``backbone``, before anything is built."""
    name = getattr(backbone, "name", type(backbone).__name__)
    if getattr(backbone, "family", None) != "vit":
        raise ValueError(f"method 'taskprompter' runs inside a plain ViT (its prompts join every block's "
                         f"attention); backbone '{name}' is not one: use --backbone vit_l or vit_b")
    vit = backbone.body.model
    if len(backbone.body.out_indices) != 4 or int(backbone.body.out_indices[-1]) != len(vit.blocks) - 1:
        raise ValueError(f"taskprompter: the backbone's last feature level must be its last block, with 3 before "
                         f"it (the release's select_list); got out_indices {list(backbone.body.out_indices)}")
    n = int(round(math.sqrt(chan_nheads)))
    gh, gw = vit.patch_embed.grid_size
    if n * n != chan_nheads or gh % n or gw % n:
        raise ValueError(f"taskprompter: chan_nheads={chan_nheads} must be a square n*n whose n divides the "
                         f"{gh}x{gw} token grid (the channel prompts' windows)")
    heads = vit.blocks[0].attn.num_heads * prompt_len
    if vit.embed_dim % heads:
        raise ValueError(f"taskprompter: ViT width {vit.embed_dim} must be divisible by heads x prompt_len = {heads}")


@register_method("taskprompter")
def build_taskprompter(task_channels, backbone, cfg):
    """cfg keys: see ``DEFAULTS``. The token grid (hence ``token_trans``) comes from ``backbone.img_size``."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"method 'taskprompter': unknown cfg key(s) {unknown}; valid keys: "
                         + ", ".join(f"{k} (default {v!r})" for k, v in DEFAULTS.items()))
    cfg = {**DEFAULTS, **cfg}
    if cfg["use_ctr"] and cfg["prompt_len"] != 1:
        raise ValueError("taskprompter: use_ctr needs prompt_len 1 (the release asserts it)")
    check_backbone(backbone, cfg["chan_nheads"], cfg["prompt_len"])
    return TaskPrompter(backbone, task_channels, **cfg)


build_taskprompter.cfg_keys = tuple(DEFAULTS)  # checked against the recipe before any run (mtbench.recipe_check)
