"""CAGrad: the update maximising the worst task's improvement within a ball of radius c·‖mean gradient‖ around the mean (c = 0: the mean)."""
from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, TorchjdAggregation, number


@register_weighting("cagrad")
class CAGradStrategy(TorchjdAggregation):
    paper = "Liu, Liu, Jin, Stone, Liu: Conflict-Averse Gradient Descent for Multi-task Learning, NeurIPS 2021"
    backend = "torchjd.aggregation.CAGrad"
    cfg_keys = {**GRADIENT_KEYS, "c": 0.4, "norm_eps": 1e-4}
    checks = {**GRADIENT_CHECKS, "c": number(0), "norm_eps": number(0)}
    requires, extra = ("cvxpy", "clarabel"), "solvers"

    def build(self):
        from torchjd.aggregation import CAGrad

        return CAGrad(c=float(self.options["c"]), norm_eps=float(self.options["norm_eps"]))
