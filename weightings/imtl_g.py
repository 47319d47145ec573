"""IMTL-G: the combination whose projections on every unit task gradient are equal."""
from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, TorchjdAggregation


@register_weighting("imtl_g")
class IMTLGStrategy(TorchjdAggregation):
    paper = "Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang: Towards Impartial Multi-task Learning, ICLR 2021"
    backend = "torchjd.aggregation.IMTLG"
    cfg_keys = {**GRADIENT_KEYS}
    checks = {**GRADIENT_CHECKS}

    def build(self):
        from torchjd.aggregation import IMTLG

        return IMTLG()
