"""FAMO: task logits z = softmax(w); the model follows c Σ z_t log L_t; after each step the logits take one Adam
step on the change of log-losses on the same batch, recomputed after the update (as the released code does, with
the model in training mode)."""
import torch

from mtbench.registry import register_weighting
from mtbench.weighting import TorchjdScalarization, number


@register_weighting("famo")
class FAMO(TorchjdScalarization):
    paper = "Liu, Liu, Stone, Liu: FAMO: Fast Adaptive Multitask Optimization, NeurIPS 2023"
    backend = "torchjd.scalarization.FAMO"
    cfg_keys = {"lr": 0.025, "weight_decay": 1e-3}
    checks = {"lr": number(0), "weight_decay": number(0)}
    needs_losses_after_step = True

    def build(self):
        from torchjd.scalarization import FAMO as TorchjdFAMO

        return TorchjdFAMO(len(self.tasks), lr=float(self.options["lr"]),
                           weight_decay=float(self.options["weight_decay"]))

    def parameters(self):
        return []  # FAMO steps its logits itself (its own Adam); the run's optimizer must not

    def after_step(self, iteration, losses_after):
        self.scalarizer.update(losses_after)

    def state_dict(self):
        s = self.scalarizer
        return {"module": {k: v.detach().clone() for k, v in s.state_dict().items()},
                "adam": None if s._optimizer is None else s._optimizer.state_dict(),
                "previous": s._prev_losses}

    def load_state_dict(self, state):
        s = self.scalarizer
        s.load_state_dict(state["module"])
        s._prev_losses = state["previous"]
        s._optimizer = None
        if state["adam"] is not None:
            s._optimizer = torch.optim.Adam([s._w], lr=s.lr, weight_decay=s.weight_decay)
            s._optimizer.load_state_dict(state["adam"])
