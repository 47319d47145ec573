"""The NYUv2 / Cityscapes tasks of the optimisation literature (MTAN, LibMTL, CAGrad, Nash-MTL, FAMO).

Their losses and metrics are not the dense-prediction benchmark's (depth L1 but scored by absolute/relative
error, normals trained with 1 − cos, scored over every metric), so they are tasks of their own, named after the
convention: ``semseg_libmtl``, ``depth_libmtl``, ``normals_libmtl``. Losses are LibMTL ``examples/nyu/utils.py``
(``SegLoss``, ``DepthLoss``, ``NormalLoss``), equal to MTAN's ``model_fit``; metrics in
:mod:`mtbench.metrics.libmtl`. Each task lists the metrics the setting's Δm averages (``delta_metrics``): every
metric of the papers' tables. Equal loss weights (LibMTL's ``EW``; the weighting axis changes them).
"""
from __future__ import annotations

from mtbench.metrics.libmtl import LibMTLDepth, LibMTLNormals, LibMTLSegmentation, normalize
from mtbench.registry import register_task
from tasks.depth import Depth
from tasks.normals import Normals
from tasks.semseg import Semseg

# What the three classes take from the benchmark's tasks is the code that is the same (channels, the semseg CE,
# which is ``nn.CrossEntropyLoss(ignore_index=-1)``: the mean over labelled pixels, −1 being our 255, argmax,
# depth's raw output, the priors).


class _LibMTL:
    """What the three share: equal weights (the ``libmtl`` profile), and no written predictions
    (``prediction_kind`` '', the qualitative grid and ``bench.py predict`` leave them out)."""

    prediction_kind = ""
    weights = {"libmtl": 1.0}


class SemsegLibMTL(_LibMTL, Semseg):
    name = "semseg_libmtl"
    primary_metric = "mIoU"
    delta_metrics = ("mIoU", "pixAcc")

    @classmethod
    def evaluator_class(cls):
        return LibMTLSegmentation

    def evaluator(self, info, eval_cfg):
        return LibMTLSegmentation(info.num_classes[self.name])


class DepthLibMTL(_LibMTL, Depth):
    name = "depth_libmtl"
    primary_metric = "abs_err"
    delta_metrics = ("abs_err", "rel_err")

    def valid(self, target):
        """LibMTL's mask: g ≠ 0 (the benchmark's depth task: g > 0)."""
        return target != 0

    @classmethod
    def evaluator_class(cls):
        return LibMTLDepth

    def evaluator(self, info, eval_cfg):
        return LibMTLDepth()


class NormalsLibMTL(_LibMTL, Normals):
    name = "normals_libmtl"
    primary_metric = "mean"
    delta_metrics = ("mean", "median", "a11.25", "a22.5", "a30")

    def valid(self, target):
        """LibMTL's / MTAN's mask: the target's components do not sum to 0 (B,H,W)."""
        return target.sum(dim=1) != 0

    def loss(self, logits, target):
        """``NormalLoss``: 1 − Σ_valid (p̂ · g) / n_valid, p̂ = p / ‖p‖."""
        pred = normalize(logits.float())
        valid = self.valid(target).unsqueeze(1)
        return 1 - (pred * target * valid).sum() / valid.sum().clamp(min=1)

    def postprocess(self, logits):
        return normalize(logits.float())

    @classmethod
    def evaluator_class(cls):
        return LibMTLNormals

    def evaluator(self, info, eval_cfg):
        return LibMTLNormals()

    def prior_prediction(self, stats, like):
        """Normalised in float64 (the benchmark's normals task normalises in float32)."""
        mean = (stats / stats.norm().clamp(min=1e-12)).float().to(like.device)
        return mean.view(1, 3, 1, 1).expand(like.shape[0], 3, *like.shape[2:]).contiguous()


register_task("semseg_libmtl")(SemsegLibMTL())
register_task("depth_libmtl")(DepthLibMTL())
register_task("normals_libmtl")(NormalsLibMTL())
