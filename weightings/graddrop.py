"""GradDrop: per coordinate, keep the gradients of one sign, chosen at random by the sign purity (not Gramian-based: with rep it runs on one process only)."""
from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, TorchjdAggregation


@register_weighting("graddrop")
class GradDropStrategy(TorchjdAggregation):
    paper = "Chen, Ngiam, Huang, Luong, Kretzschmar, Chai, Anguelov: Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout, NeurIPS 2020"
    backend = "torchjd.aggregation.GradDrop"
    cfg_keys = {**GRADIENT_KEYS}
    checks = {**GRADIENT_CHECKS}

    def build(self):
        from torchjd.aggregation import GradDrop

        return GradDrop()
