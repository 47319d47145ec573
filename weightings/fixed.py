"""The recipe's per-task loss weights, summed: what every method's paper trains with, and the default."""
from mtbench.registry import register_weighting
from mtbench.weighting import LossStrategy


@register_weighting("fixed")
class Fixed(LossStrategy):
    paper = "the methods' own papers (MTI-Net, ATRC, InvPT): Σ_t w_t L_t with the recipe's loss_weights"
    backend = "mtbench/weighting.py (the plain weighted sum)"

    def scalarize(self, losses):
        return losses.sum()
