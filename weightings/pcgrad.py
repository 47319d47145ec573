"""PCGrad: each task gradient loses its projection on every task gradient it conflicts with (random order), then they are summed."""
from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, TorchjdAggregation


@register_weighting("pcgrad")
class PCGradStrategy(TorchjdAggregation):
    paper = "Yu, Kumar, Gupta, Levine, Hausman, Finn: Gradient Surgery for Multi-Task Learning, NeurIPS 2020"
    backend = "torchjd.aggregation.PCGrad"
    cfg_keys = {**GRADIENT_KEYS}
    checks = {**GRADIENT_CHECKS}

    def build(self):
        from torchjd.aggregation import PCGrad

        return PCGrad()
