"""Shared pieces of the two per-pixel classification tasks (semseg and human parts)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mtbench.data.base import IGNORE


def ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over labelled pixels; 0 (not NaN) when none is labelled.

    As the ATRC/InvPT ``CrossEntropyLoss``: sum over valid pixels / max(n_valid, 1).
    """
    target = target.long()
    loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE, reduction="sum")
    n_valid = (target != IGNORE).sum().clamp(min=1)
    return loss / n_valid


def class_histogram(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    valid = target[target != IGNORE].long()
    return torch.bincount(valid.flatten(), minlength=num_classes)[:num_classes].double()


def majority_prediction(stats: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.full(like.shape, int(stats.argmax()), dtype=torch.long, device=like.device)
