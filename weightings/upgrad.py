"""UPGrad: the mean of the task gradients each projected onto the dual cone of all of them."""
from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, TorchjdAggregation


@register_weighting("upgrad")
class UPGradStrategy(TorchjdAggregation):
    paper = "Quinton, Rey: Jacobian Descent for Multi-Objective Optimization, arXiv:2406.16232 (2024)"
    backend = "torchjd.aggregation.UPGrad"
    cfg_keys = {**GRADIENT_KEYS}
    checks = {**GRADIENT_CHECKS}

    def build(self):
        from torchjd.aggregation import UPGrad

        return UPGrad()
