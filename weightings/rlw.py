"""Random loss weighting: fresh softmax(N(0, I)) weights every step (from the run's seeded torch generator)."""
from mtbench.registry import register_weighting
from mtbench.weighting import TorchjdScalarization


@register_weighting("rlw")
class RandomLossWeighting(TorchjdScalarization):
    paper = ("Lin, Ye, Xu, Shi, Zhang: Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task "
             "Learning, TMLR 2022")
    backend = "torchjd.scalarization.Random"

    def build(self):
        from torchjd.scalarization import Random

        return Random()
