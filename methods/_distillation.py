"""Blocks shared by PAD-Net and MTI-Net, built as in Vandenhende's Multi-Task-Learning-PyTorch release.

The release builds its decoders from torchvision's ``BasicBlock``/``Bottleneck`` (``models/resnet.py``),
``SEBlock``/``SABlock`` (``models/layers.py``) and PAD-Net's ``MultiTaskDistillationModule``
(``models/padnet.py``, reused by MTI-Net). They are re-implemented here with the same layers, shapes,
biases and default PyTorch initialisation, so parameter counts and the computation match the release.
Not a plugin (leading underscore): nothing is registered here.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
import torch.nn as nn


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


def _projection(cin: int, cout: int) -> nn.Module | None:
    """1×1 conv + BN shortcut, which the release passes as ``downsample`` whenever widths differ."""
    if cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block (stride 1): conv3×3-BN-ReLU-conv3×3-BN + shortcut, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, cout), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, cout)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck (stride 1, expansion 4): 1×1 → 3×3 → 1×1 (4·planes) + shortcut."""

    expansion = 4

    def __init__(self, cin: int, planes: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(cin, cout)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class SqueezeExcitation(nn.Module):
    """Release ``SEBlock``: global mean → Linear(C, C//16) → ReLU → Linear → sigmoid, rescales channels.

    ``max(1, ·)`` only matters below 16 channels, which no registered backbone has."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.squeeze = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(),
                                     nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x):
        return x * self.squeeze(x.mean(dim=(2, 3)))[:, :, None, None]


class SpatialAttention(nn.Module):
    """Release ``SABlock``: a 3×3 conv message gated per pixel and channel by sigmoid(3×3 conv)."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention = nn.Sequential(_conv3x3(channels, channels), nn.Sigmoid())
        self.conv = _conv3x3(channels, channels)

    def forward(self, x):
        return self.conv(x) * self.attention(x)


class MultiModalDistillation(nn.Module):
    """PAD-Net's attention-guided distillation (the release's ``MultiTaskDistillationModule``).

    Every target task keeps its own features and adds one attention-gated message from every *source*
    task other than itself: ``out[t] = f_t + Σ_{s ∈ sources, s ≠ t} SA_{t←s}(f_s)``. Each (target, source)
    pair has its own block, as in the release. A target without any source is passed through unchanged
    (the release would fail on ``torch.stack([])`` there).
    """

    def __init__(self, targets: Iterable[str], sources: Iterable[str], channels: int):
        super().__init__()
        self.sources = list(sources)
        self.attention = nn.ModuleDict({
            t: nn.ModuleDict({s: SpatialAttention(channels) for s in self.sources if s != t}) for t in targets})

    def forward(self, feats: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for t, blocks in self.attention.items():
            messages = [block(feats[s]) for s, block in blocks.items()]
            # Messages summed first, then added: the release's order, so float results match it.
            out[t] = feats[t] + torch.stack(messages).sum(dim=0) if messages else feats[t]
        return out


AUX_KEYS = ("aux_tasks", "auxilary_tasks")  # mtbench spelling, and the release's spelling


def check_cfg(method: str, cfg: Mapping[str, Any] | None, valid: Iterable[str]) -> dict[str, Any]:
    """Reject unknown keys (a typo would otherwise silently train the default model)."""
    cfg = dict(cfg or {})
    valid = sorted(valid)
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ValueError(f"method '{method}': unknown cfg key(s) {unknown}; valid keys: {valid}")
    return cfg


def resolve_aux_tasks(method: str, cfg: Mapping[str, Any], tasks: Iterable[str]) -> list[str]:
    """The distillation's source tasks: cfg ``aux_tasks`` (or the release's ``auxilary_tasks``), default
    all tasks of the run. They must be tasks of the run: only those have targets for deep supervision."""
    tasks = list(tasks)
    given = [k for k in AUX_KEYS if k in cfg and cfg[k] is not None]
    if len(given) > 1:
        raise ValueError(f"method '{method}': give only one of {list(AUX_KEYS)} (they are the same option)")
    if not given:
        return tasks
    aux = cfg[given[0]]
    if isinstance(aux, str):
        aux = [aux]
    aux = list(aux)
    bad = [a for a in aux if a not in tasks]
    if bad or len(set(aux)) != len(aux):
        raise ValueError(f"method '{method}': {given[0]}={aux} must list distinct tasks of this run "
                         f"{tasks}; not in the run: {bad}")
    return [t for t in tasks if t in aux]  # run order, so module order does not depend on the cfg order
