"""ATRC's context-pooling (CP) blocks and the module that runs one per (target, source) task pair.

Written from the release ``brdav/atrc`` (``src/model/heads/attention.py``, ``relationalcontext.py``,
``utils_heads.py``) with the same layers, shapes, initialisation and submodule names, so that
``_fill``-style weights or a released head checkpoint load by name. Not a plugin (leading underscore).

Every block maps (target features, source features) → a message of ``att`` channels at the target's
resolution: query from the target, key and value from the source (global, local) or from the source
features pooled under spatial class distributions (t-label: the target's initial prediction,
s-label: the source's).
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

CONTEXTS = ("none", "global", "local", "tlabel", "slabel")  # the release's genotype codes 0–4, in order
LABEL_CONTEXTS = ("tlabel", "slabel")
LOCAL_KERNEL = 9  # the release's kernel_size for LocalContextAttentionBlock


class ConvBNAct(nn.Module):
    """The release's ``ConvBNReLU`` with a norm layer: conv (no bias) → BN → ReLU (optional); same names."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activation = nn.ReLU(inplace=True) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.activation is None else self.activation(x)


class ContextBlock(nn.Module):
    """Query/key/value projections shared by all context types (two 1×1 ConvBNAct for query and key, one
    for the value), each block's convs Xavier-uniform as the release's ``init_weights``.

    Global attention ends query and key in BN → Softplus (positive features for its linear attention);
    the others in BN → ReLU.
    """

    positive = False

    def __init__(self, cin: int, att: int):
        super().__init__()

        def project():
            layers = [ConvBNAct(cin, att), ConvBNAct(att, att, relu=not self.positive)]
            return nn.Sequential(*layers, nn.Softplus()) if self.positive else nn.Sequential(*layers)

        self.query_project, self.key_project = project(), project()
        self.value_project = ConvBNAct(cin, att)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, target, source, target_prob=None, source_prob=None):
        raise NotImplementedError


class GlobalContext(ContextBlock):
    """Linear attention over all source pixels: V = (v kᵀ) q / (Σ_pixels k · q), denominator ≥ 1e-12."""

    positive = True

    def forward(self, target, source, target_prob=None, source_prob=None):
        key = self.key_project(source).flatten(2)  # B × D × HW
        value = self.value_project(source).flatten(2)  # B × M × HW
        query = self.query_project(target).flatten(2)  # B × D × HW
        summary = torch.matmul(value, key.transpose(1, 2))  # B × M × D
        denom = torch.matmul(key.sum(dim=2).unsqueeze(1), query)  # B × 1 × HW
        out = torch.matmul(summary, query) / denom.clamp_min(1e-12)
        return out.view(out.shape[0], -1, *target.shape[2:])


def local_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kernel: int) -> torch.Tensor:
    """Softmax attention of every pixel over the kernel×kernel window around it (scale 1/√channels).

    The release's CUDA op (``ops/locatt_ops``: ``cc2k``, ``ck2c_ori``) gives an out-of-image neighbour
    similarity 0 (it still takes softmax mass) and value 0; zero-padded ``unfold`` does exactly that.
    """
    b, c, h, w = key.shape
    r, n = kernel // 2, kernel * kernel
    keys = F.unfold(key, kernel, padding=r).view(b, c, n, h * w)
    sim = torch.einsum("bcp,bcnp->bnp", query.flatten(2), keys) / math.sqrt(c)
    weights = sim.softmax(dim=1)
    values = F.unfold(value, kernel, padding=r).view(b, value.shape[1], n, h * w)
    return torch.einsum("bnp,bcnp->bcp", weights, values).view(b, -1, h, w)


class LocalContext(ContextBlock):
    def forward(self, target, source, target_prob=None, source_prob=None):
        return local_attention(self.query_project(target), self.key_project(source), self.value_project(source),
                               LOCAL_KERNEL)


class LabelContext(ContextBlock):
    """Attention of every target pixel over K label regions: the source features pooled under the K spatial
    distributions of an initial prediction (the target's for t-label, the source's for s-label)."""

    def __init__(self, cin: int, att: int, kind: str):
        super().__init__(cin, att)
        self.kind = kind

    def forward(self, target, source, target_prob=None, source_prob=None):
        prob = target_prob if self.kind == "tlabel" else source_prob  # B × K × HW, each row sums to 1
        context = torch.matmul(prob, source.flatten(2).transpose(1, 2))  # B × K × C
        context = context.transpose(1, 2).unsqueeze(3)  # B × C × K × 1: regions as a 1-wide "image"
        key = self.key_project(context).flatten(2)  # B × D × K
        value = self.value_project(context).flatten(2).transpose(1, 2)  # B × K × M
        query = self.query_project(target).flatten(2).transpose(1, 2)  # B × HW × D
        sim = (torch.matmul(query, key) / query.shape[-1] ** 0.5).softmax(dim=-1)
        out = torch.matmul(sim, value).transpose(1, 2)  # B × M × HW
        return out.reshape(out.shape[0], -1, *target.shape[2:])


def make_block(kind: str, cin: int, att: int) -> ContextBlock:
    if kind == "global":
        return GlobalContext(cin, att)
    if kind == "local":
        return LocalContext(cin, att)
    return LabelContext(cin, att, kind)


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """B × K × H × W logits → B × K × HW: each class's distribution over the pixels (``spatial_normalize_pred``)."""
    return logits.flatten(2).softmax(dim=2)


class ATRCModule(nn.Module):
    """The release's ``ATRCModule``: per target, the messages of its CP blocks (sources in task order,
    ``none`` skipped) are concatenated, projected back to ``cin`` (1×1 conv + BN, the BN zero-initialised so
    distillation starts as the identity), concatenated with the target's features and fused
    (1×1 ConvBNAct 2·cin → cin, Dropout2d 0.05). A target with no source is fused alone (cin → cin)."""

    def __init__(self, tasks: list[str], genotype: Mapping[str, Mapping[str, str]], cin: int, att: int,
                 drop_rate: float = 0.05):
        super().__init__()
        self.tasks, self.genotype = list(tasks), {t: dict(genotype[t]) for t in tasks}
        self.cp_blocks = nn.ModuleDict({
            t: nn.ModuleDict({s: make_block(self.genotype[t][s], cin, att)
                              for s in self.tasks if self.genotype[t][s] != "none"})
            for t in self.tasks})
        self.out_proj = nn.ModuleDict()
        self.bottleneck = nn.ModuleDict()
        for t in self.tasks:
            n = len(self.cp_blocks[t])
            if n:
                self.out_proj[t] = ConvBNAct(att * n, cin, relu=False)
                nn.init.zeros_(self.out_proj[t].bn.weight)
                nn.init.zeros_(self.out_proj[t].bn.bias)
            self.bottleneck[t] = nn.Sequential(ConvBNAct(cin * (2 if n else 1), cin), nn.Dropout2d(drop_rate))

    def forward(self, feats: Mapping[str, torch.Tensor], probs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for t in self.tasks:
            messages = [block(feats[t], feats[s], probs.get(t), probs.get(s)) for s, block in self.cp_blocks[t].items()]
            x = feats[t]
            if messages:
                x = torch.cat([x, self.out_proj[t](torch.cat(messages, dim=1))], dim=1)
            out[t] = self.bottleneck[t](x)
        return out
