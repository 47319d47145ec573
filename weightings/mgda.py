"""MGDA: the minimum-norm point of the convex hull of the task gradients (Frank-Wolfe on their Gramian)."""
from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, TorchjdAggregation, integer, number


@register_weighting("mgda")
class MGDAStrategy(TorchjdAggregation):
    paper = "Sener, Koltun: Multi-Task Learning as Multi-Objective Optimization, NeurIPS 2018"
    backend = "torchjd.aggregation.MGDA"
    cfg_keys = {**GRADIENT_KEYS, "epsilon": 0.001, "max_iters": 100}
    checks = {**GRADIENT_CHECKS, "epsilon": number(0, strict=True), "max_iters": integer(1)}

    def build(self):
        from torchjd.aggregation import MGDA

        return MGDA(epsilon=float(self.options["epsilon"]), max_iters=int(self.options["max_iters"]))
