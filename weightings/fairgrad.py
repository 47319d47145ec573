"""FairGrad: α-fair allocation of the update across tasks (α = 1: proportional fairness)."""
from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, TorchjdAggregation, number


@register_weighting("fairgrad")
class FairGradStrategy(TorchjdAggregation):
    paper = "Ban, Ji: Fair Resource Allocation in Multi-Task Learning, ICML 2024"
    backend = "torchjd.aggregation.FairGrad"
    cfg_keys = {**GRADIENT_KEYS, "alpha": 1.0}
    checks = {**GRADIENT_CHECKS, "alpha": number(0, strict=True)}
    requires, extra = ("scipy",), "solvers"

    def build(self):
        from torchjd.aggregation import FairGrad

        return FairGrad(alpha=float(self.options["alpha"]))
