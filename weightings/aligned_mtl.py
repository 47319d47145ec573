"""Aligned-MTL: the task gradients made orthogonal with equal norms (condition number 1), then summed."""
from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, TorchjdAggregation


@register_weighting("aligned_mtl")
class AlignedMTLStrategy(TorchjdAggregation):
    paper = "Senushkin, Patakin, Kuznetsov, Konushin: Independent Component Alignment for Multi-Task Learning, CVPR 2023"
    backend = "torchjd.aggregation.AlignedMTL"
    cfg_keys = {**GRADIENT_KEYS, "scale_mode": "min"}
    checks = {**GRADIENT_CHECKS, "scale_mode": ((lambda v: v in ("min", "median", "rmse")), "one of min, median, rmse")}

    def build(self):
        from torchjd.aggregation import AlignedMTL

        return AlignedMTL(scale_mode=self.options["scale_mode"])
