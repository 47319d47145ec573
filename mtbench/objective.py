"""The training objective: one definition for the engine and for ``bench.py profile``.

Σ_t w_t · loss_t(final_t) plus, for every deep-supervision level a method returns under ``aux``, the same
weighted task losses on its outputs. A method whose deep supervision predicts something other than the
task's output (ATRC's depth bins and normal clusters) names the loss for it in ``model.aux_losses``
(``{level: {task: fn(logits, target) -> loss}}``); the task's weight still applies.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

AuxLosses = Mapping[str, Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]]


def training_loss(out: Mapping[str, Any], targets: Mapping[str, torch.Tensor], tasks: Mapping[str, Any],
                  weights: Mapping[str, float], aux_losses: AuxLosses | None = None) -> torch.Tensor:
    loss = sum(weights[t] * tasks[t].loss(out["final"][t], targets[t]) for t in tasks)
    for level, aux in out.get("aux", {}).items():
        own = (aux_losses or {}).get(level, {})
        loss = loss + sum(weights[t] * own.get(t, tasks[t].loss)(aux[t], targets[t]) for t in aux)
    return loss
