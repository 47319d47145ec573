"""The training objective: one definition for the engine, for ``bench.py profile`` and for weighting strategies.

Each task's loss is w_t · loss_t(final_t) plus, for every deep-supervision level a method returns under ``aux``,
the same weighted task loss on its outputs. A method whose deep supervision predicts something other than the
task's output (ATRC's depth bins and normal clusters) names the loss for it in ``model.aux_losses``
(``{level: {task: fn(logits, target) -> loss}}``); the task's weight still applies. The per-task terms stay
separate because that is what a weighting strategy combines; the plain objective is their sum.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

AuxLosses = Mapping[str, Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]]


def task_losses(out: Mapping[str, Any], targets: Mapping[str, torch.Tensor], tasks: Mapping[str, Any],
                weights: Mapping[str, float], aux_losses: AuxLosses | None = None) -> dict[str, torch.Tensor]:
    """Each task's weighted loss, its deep-supervision terms included."""
    losses = {t: weights[t] * tasks[t].loss(out["final"][t], targets[t]) for t in tasks}
    for level, aux in out.get("aux", {}).items():
        own = (aux_losses or {}).get(level, {})
        for t in aux:
            losses[t] = losses[t] + weights[t] * own.get(t, tasks[t].loss)(aux[t], targets[t])
    return losses
