"""Uncertainty weighting: a learned log-variance per task, trained with the model by the run's optimizer."""
from mtbench.registry import register_weighting
from mtbench.weighting import TorchjdScalarization


@register_weighting("uw")
class UncertaintyWeighting(TorchjdScalarization):
    paper = ("Kendall, Gal, Cipolla: Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and "
             "Semantics, CVPR 2018")
    backend = "torchjd.scalarization.UW"

    def build(self):
        from torchjd.scalarization import UW

        return UW(len(self.tasks))
