"""Smooth Tchebycheff: μ log Σ_t exp(L_t / (T μ)), a smooth maximum of the (uniformly preferred) task losses.
No ideal point is subtracted (the paper's MTL runs estimate one in a warm-up; here it is 0, the losses' bound)."""
from mtbench.registry import register_weighting
from mtbench.weighting import TorchjdScalarization, number


@register_weighting("stch")
class SmoothTchebycheff(TorchjdScalarization):
    paper = ("Lin, Zhang, Liu, Ye, Zhang, Zhang: Smooth Tchebycheff Scalarization for Multi-Objective Optimization, "
             "ICML 2024")
    backend = "torchjd.scalarization.STCH"
    cfg_keys = {"mu": 1.0}
    checks = {"mu": number(0, strict=True)}

    def build(self):
        from torchjd.scalarization import STCH

        return STCH(mu=float(self.options["mu"]))
