"""Dynamic Weight Average: λ_t = T·softmax_t(w_t / temperature), w_t = L_t(e−1) / L_t(e−2), from the training
losses averaged over the two previous epochs (uniform weights in the first two). Runs count iterations, so an
"epoch" is ``period`` iterations: by default one pass over the training set."""
import math

from mtbench.registry import register_weighting
from mtbench.weighting import TorchjdScalarization, integer, number


@register_weighting("dwa")
class DynamicWeightAverage(TorchjdScalarization):
    paper = "Liu, Johns, Davison: End-to-End Multi-Task Learning with Attention, CVPR 2019"
    backend = "torchjd.scalarization.DWA"
    cfg_keys = {"temperature": 2.0, "period": 0}
    checks = {"temperature": number(0, strict=True),
              "period": (lambda v: v == 0 or integer(1)[0](v), "0 (one pass over the training set) or an integer ≥ 1")}

    def build(self):
        from torchjd.scalarization import DWA

        return DWA(temperature=float(self.options["temperature"]))

    @property
    def period(self) -> int:
        if self.options["period"]:
            return int(self.options["period"])
        return max(1, math.ceil(self.setup["n_train"] / self.setup["batch_size"]))

    def after_step(self, iteration, losses_after):
        if iteration % self.period == 0:
            self.scalarizer.step()  # the epoch's average loss joins the history

    # torchjd 0.18 keeps the history in plain attributes, not buffers: saved here so that a resumed run is exact.
    def state_dict(self):
        s = self.scalarizer
        return {"loss_sum": s._loss_sum, "n_batches": s._n_batches, "previous": list(s._previous_averages)}

    def load_state_dict(self, state):
        s = self.scalarizer
        s._loss_sum, s._n_batches, s._previous_averages = state["loss_sum"], state["n_batches"], list(state["previous"])
