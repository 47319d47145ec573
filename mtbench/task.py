"""The task contract: what a method's output means, how it is trained and how it is scored.

A task owns everything that is specific to one kind of per-pixel output, so that methods stay
task-agnostic (they only need ``out_channels``) and the engine stays method-agnostic.
"""
from __future__ import annotations

from typing import Any

import torch

from mtbench.data.base import IGNORE, DatasetInfo
from mtbench.metrics.base import Evaluator


class Task:
    name: str = ""
    #: the metric Δm and leaderboards use; its direction comes from the evaluator.
    primary_metric: str = ""
    #: loss weight per dataset profile (the papers' values; see each task file): the default of the recipe's
    #: ``loss_weights.<task>`` (``mtbench.weighting.resolved_loss_weights``).
    weights: dict[str, float] = {}
    #: True where the engine should save predictions as PNG for later re-scoring.
    saves_predictions: bool = False
    #: how a prediction is written and drawn (``mtbench.prediction_io``): labels, depth, normals or probability;
    #: '' = never written (the qualitative grid and ``bench.py predict`` leave the task out).
    prediction_kind: str = ""

    def out_channels(self, info: DatasetInfo) -> int:
        raise NotImplementedError

    def weight(self, info: DatasetInfo) -> float:
        return self.weights[info.loss_weight_profile]

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def postprocess(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits → the prediction an evaluator scores (labels, metres, unit vectors, probabilities)."""
        raise NotImplementedError

    def evaluator(self, info: DatasetInfo, eval_cfg: dict[str, Any]) -> Evaluator:
        raise NotImplementedError

    def higher_is_better(self, metric: str) -> bool:
        return type(self).evaluator_class().higher_is_better[metric]

    @classmethod
    def evaluator_class(cls) -> type[Evaluator]:
        raise NotImplementedError

    # --- the trivial predictor: a constant fitted on the training targets -------------------
    # Every record carries its scores so anyone can see how far a method is above chance.
    def prior_stats(self, target: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
        """Additive sufficient statistics of one batch of targets (float64 vector)."""
        raise NotImplementedError

    def prior_prediction(self, stats: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The constant prediction for a batch shaped like ``like`` (the batch's target)."""
        raise NotImplementedError


# --- trivial-predictor pieces that several tasks share --------------------------------------
def positive_stats(target: torch.Tensor) -> torch.Tensor:
    """(number of pixels labelled 1, number labelled) of a binary target with 255 = ignore."""
    valid = target != IGNORE
    return torch.stack([((target == 1) & valid).sum().double(), valid.sum().double()])


def ratio_prediction(stats: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The constant stats[0] / stats[1] (a sum over a count: the mean depth, the fraction of positives)."""
    return torch.full(like.shape, float(stats[0] / stats[1].clamp(min=1)), device=like.device)
