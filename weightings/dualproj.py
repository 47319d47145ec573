"""DualProj: the mean gradient projected onto the dual cone of the task gradients."""
from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, TorchjdAggregation


@register_weighting("dualproj")
class DualProjStrategy(TorchjdAggregation):
    paper = "Quinton, Rey: Jacobian Descent for Multi-Objective Optimization, arXiv:2406.16232 (2024)"
    backend = "torchjd.aggregation.DualProj"
    cfg_keys = {**GRADIENT_KEYS}
    checks = {**GRADIENT_CHECKS}

    def build(self):
        from torchjd.aggregation import DualProj

        return DualProj()
