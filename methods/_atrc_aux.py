"""ATRC's initial (auxiliary) predictions: their channels and the losses that supervise them.

The label contexts need a spatial class distribution per task, so the release predicts discretised
versions of the continuous tasks (``src/data/pl_data.py`` ``task_channel_mapping['aux']``,
``src/model/builder.py`` ``get_criterion``, ``src/model/criterion.py``):

- depth: 40 log-spaced bins between 0.7 and 10 m (``BinningCrossEntropyLoss``);
- normals: the nearest of 40 unit-vector clusters (``ClusterCrossEntropyLoss``; the release's
  ``nyu_centroids.npy`` / ``pascal_centroids.npy``, shipped as ``atrc_data/normals_centroids_*.json``);
- edge: 2-class softmax CE with class weights (1 − w, w);
- semseg, human parts, saliency (and any other task): the task's own output and loss.

Each loss is the task's loss weight times a mean over valid pixels, with mtbench's validity rules (depth
> 0; normals neither 255 nor zero; labels not 255), which are the release's once its ``AddIgnoreRegions``
has run. The model lists these losses in ``aux_losses``; the engine applies them.
"""
from __future__ import annotations

import json
import math
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from mtbench.data.base import IGNORE
from methods._atrc_genotype import DATA_DIR
from tasks.edge import POS_WEIGHT
from tasks.normals import valid_normals

DEPTH_BINS, DEPTH_MIN, DEPTH_MAX = 40, 0.7, 10.0  # BinningCrossEntropyLoss(num_bins=40), alpha, beta
NORMAL_CLUSTERS = 40
AUX_CHANNELS = {"depth": DEPTH_BINS, "normals": NORMAL_CLUSTERS, "edge": 2}
CENTROID_SETS = ("nyud", "pascal")


def aux_channels(task: str, final_channels: int) -> int:
    return AUX_CHANNELS.get(task, final_channels)


def _mean_ce(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(Weighted) CE summed over labelled pixels / their number (0, not NaN, when there is none)."""
    loss = F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=IGNORE, reduction="sum")
    return loss / (labels != IGNORE).sum().clamp(min=1)


def depth_bins(depth: torch.Tensor) -> torch.Tensor:
    """Bin index floor(40 · log(d / 0.7) / log(10 / 0.7)), clamped to 0…39; invalid (≤ 0) → IGNORE."""
    valid = depth > 0
    scaled = DEPTH_BINS * torch.log(depth.float().clamp(min=1e-6) / DEPTH_MIN) / math.log(DEPTH_MAX / DEPTH_MIN)
    bins = torch.floor(scaled).clamp(0, DEPTH_BINS - 1).long()
    return torch.where(valid, bins, torch.full_like(bins, IGNORE))


def depth_bins_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _mean_ce(logits, depth_bins(target))


def load_centroids(name: str) -> torch.Tensor:
    if name not in CENTROID_SETS:
        raise ValueError(f"method 'atrc': normals_centroids must be one of {', '.join(CENTROID_SETS)}, got {name!r}")
    rows = json.loads((DATA_DIR / f"normals_centroids_{name}.json").read_text())["centroids"]
    # float64 → float32 as the release's np.load(...).astype(np.float32); on the CPU even under a meta build
    return torch.tensor(rows, dtype=torch.float64, device="cpu").float()


def normal_clusters(normals: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (Euclidean, as the release's ``torch.cdist``); invalid → IGNORE."""
    b, _, h, w = normals.shape
    flat = normals.float().permute(0, 2, 3, 1).reshape(b, h * w, 3)
    idx = torch.cdist(flat, centroids.to(flat.device)).argmin(dim=2).view(b, h, w)
    return torch.where(valid_normals(normals), idx, torch.full_like(idx, IGNORE))


def normal_clusters_loss(logits: torch.Tensor, target: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    return _mean_ce(logits, normal_clusters(target, centroids))


def edge_two_class_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Softmax CE over (no edge, edge) weighted (1 − w, w), w = the edge task's positive weight."""
    weight = torch.tensor([1.0 - POS_WEIGHT, POS_WEIGHT], device=logits.device)
    return _mean_ce(logits, target.long(), weight)  # edge targets are 0, 1 or IGNORE


def aux_losses(tasks: list[str], centroids: torch.Tensor) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The losses replacing the task's own for these tasks' initial predictions."""
    table = {"depth": depth_bins_loss, "edge": edge_two_class_loss}
    table["normals"] = partial(normal_clusters_loss, centroids=centroids)
    return {t: table[t] for t in tasks if t in table}
