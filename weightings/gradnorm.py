"""GradNorm (in-house: torchjd 0.18 has none). Learned task weights w (start at 1) scale the losses; each step
they move to bring every weighted gradient norm G_t = w_t ‖∇L_t‖ toward Ḡ · r_t^α, where r_t is the task's loss
ratio L_t / L_t(0) over the tasks' mean ratio and the target is held constant (the paper's eq. 2, L_grad =
Σ_t |G_t − Ḡ r_t^α|, differentiated in w only). The run's optimizer steps w (LibMTL's choice; weight decay 0),
then w is renormalised to Σ_t w_t = T. ∇L_t is taken over the shared parameters (LibMTL's default) or, with
``rep: true``, at the shared representation; L_t(0) is the first step's loss. The model's update is Σ_t w_t ∇L_t
with the weights before their update."""
import torch

from mtbench.registry import register_weighting
from mtbench.weighting import GRADIENT_CHECKS, GRADIENT_KEYS, GradientStrategy, number


@register_weighting("gradnorm")
class GradNorm(GradientStrategy):
    paper = ("Chen, Badrinarayanan, Lee, Rabinovich: GradNorm: Gradient Normalization for Adaptive Loss Balancing "
             "in Deep Multitask Networks, ICML 2018")
    backend = "weightings/gradnorm.py (in-house)"
    cfg_keys = {**GRADIENT_KEYS, "alpha": 1.5}
    checks = {**GRADIENT_CHECKS, "alpha": number(0)}

    def __init__(self, tasks, options, setup):
        super().__init__(tasks, options, setup)
        self.w = torch.nn.Parameter(torch.ones(len(self.tasks)))
        self.initial: torch.Tensor | None = None

    gramian_based = True

    def parameters(self):
        return [self.w]

    def to(self, device):
        self.w.data = self.w.data.to(device)
        return self

    def gramian_weights(self, gramian, losses):
        """The weights to apply now; sets ``w.grad`` to ∂L_grad/∂w for the optimizer's step."""
        losses = losses.detach().to(self.w.dtype)
        if self.initial is None:
            self.initial = losses.clone()
        norms = gramian.diagonal().clamp(min=0).sqrt().detach().to(self.w.dtype)
        with torch.enable_grad():
            g = self.w * norms
            ratio = losses / self.initial
            target = (g.mean() * (ratio / ratio.mean()) ** float(self.options["alpha"])).detach()
            grad = torch.autograd.grad((g - target).abs().sum(), self.w)[0]
        self.w.grad = grad if self.w.grad is None else self.w.grad + grad
        return self.w.detach().clone()

    def aggregate(self, jacobian, losses):
        weights = self.gramian_weights(jacobian @ jacobian.T, losses)
        return weights.to(jacobian.dtype) @ jacobian, weights

    def after_step(self, iteration, losses_after):
        with torch.no_grad():
            self.w.mul_(len(self.tasks) / self.w.sum())

    def state_dict(self):
        return {"w": self.w.detach().clone(), "initial": self.initial}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.w.copy_(state["w"])
        self.initial = state["initial"]
