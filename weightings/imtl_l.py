"""IMTL-L: a learned scale per task, Σ_t (e^{s_t} L_t − s_t), trained with the model by the run's optimizer."""
from mtbench.registry import register_weighting
from mtbench.weighting import TorchjdScalarization


@register_weighting("imtl_l")
class IMTLLoss(TorchjdScalarization):
    paper = "Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang: Towards Impartial Multi-task Learning, ICLR 2021"
    backend = "torchjd.scalarization.IMTLL"

    def build(self):
        from torchjd.scalarization import IMTLL

        return IMTLL(len(self.tasks))
