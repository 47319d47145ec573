"""GradVac: each task gradient is moved toward an EMA target cosine with every other (random order); the EMA is checkpointed."""
from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, TorchjdAggregation, number


@register_weighting("gradvac")
class GradVacStrategy(TorchjdAggregation):
    paper = "Wang, Tsvetkov, Firat, Cao: Gradient Vaccine: Investigating and Improving Multi-task Optimization in Massively Multilingual Models, ICLR 2021"
    backend = "torchjd.aggregation.GradVac"
    cfg_keys = {**GRADIENT_KEYS, "beta": 0.5, "eps": 1e-8}
    checks = {**GRADIENT_CHECKS, "beta": number(0, hi=1), "eps": number(0, strict=True)}

    def build(self):
        from torchjd.aggregation import GradVac

        return GradVac(beta=float(self.options["beta"]), eps=float(self.options["eps"]))

    # torchjd 0.18 keeps the EMA of cosines in a plain attribute: saved here so that a resumed run is exact.
    def state_dict(self):
        return {"phi": self._agg().gramian_weighting._phi_t}

    def load_state_dict(self, state):
        w = self._agg().gramian_weighting
        w._phi_t = state["phi"]
        w._state_key = None if state["phi"] is None else (state["phi"].shape[0], state["phi"].dtype)
