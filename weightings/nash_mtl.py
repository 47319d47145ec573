"""Nash-MTL: the update whose weights solve the bargaining game α ⊙ (G α) = 1 (a sequence of convex problems,
cvxpy + ECOS). A step whose solve fails keeps the previous weights, as the released code does; the previous
solution is checkpointed."""
import numpy as np
import torch

from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, TorchjdAggregation, integer, number


@register_weighting("nash_mtl")
class NashMTLStrategy(TorchjdAggregation):
    paper = ("Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya: Multi-Task Learning as a Bargaining "
             "Game, ICML 2022")
    backend = "torchjd.aggregation.NashMTL"
    cfg_keys = {**GRADIENT_KEYS, "max_norm": 1.0, "update_weights_every": 1, "optim_niter": 20}
    checks = {**GRADIENT_CHECKS, "max_norm": number(0), "update_weights_every": integer(1), "optim_niter": integer(1)}
    requires, extra = ("cvxpy", "ecos"), "solvers"

    def build(self):
        from torchjd.aggregation import NashMTL

        return NashMTL(n_tasks=len(self.tasks), max_norm=float(self.options["max_norm"]),
                       update_weights_every=int(self.options["update_weights_every"]),
                       optim_niter=int(self.options["optim_niter"]))

    # torchjd 0.18 keeps the solver state in plain attributes (numpy): saved as tensors so that a resume is exact.
    def state_dict(self):
        w = self._agg().weighting
        return {"step": float(w.step), "previous": torch.from_numpy(np.array(w.prvs_alpha, copy=True)),
                "normalization": torch.from_numpy(np.array(w.normalization_factor, copy=True))}

    def load_state_dict(self, state):
        w = self._agg().weighting
        w.step = float(state["step"])
        w.prvs_alpha = state["previous"].numpy().copy()
        w.normalization_factor = state["normalization"].numpy().copy()
        if w.step > 0:
            w._init_optim_problem()  # torchjd builds the problem on its first step only
