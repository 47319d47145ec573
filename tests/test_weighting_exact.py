"""Weighting strategies against the papers' definitions, on numbers worked by hand (not against torchjd's output).

Every strategy is used as mtbench uses it: built from the registry with its recipe options, then ``aggregate``
(gradient-based) or ``scalarize`` + ``after_step`` (loss-based), the weights read as the derivative of the scalar.
"""
import math

import pytest
import torch

from mtbench.registry import WEIGHTINGS
from mtbench.weighting import strategy_options

SETUP = {"n_train": 8, "batch_size": 2}


def make(name, tasks=("a", "b"), **options):
    return WEIGHTINGS.get(name)(list(tasks), strategy_options(name, {"weighting": {name: options}}), SETUP)


def loss_weights(strategy, losses):
    """The scalar and the weights it applies (∂scalar/∂L_t), as the engine reads them."""
    values = torch.tensor(losses, requires_grad=True)
    total = strategy.scalarize(values)
    return total, torch.autograd.grad(total, values)[0]


def test_mgda_two_tasks_is_the_closed_form():
    # Sener & Koltun, Alg. 1 (two tasks): α = clip(((g2 − g1)·g2) / ‖g1 − g2‖², 0, 1), d = α g1 + (1 − α) g2.
    # g1 = (1, 0), g2 = (0, 2): (g2 − g1)·g2 = (−1, 2)·(0, 2) = 4, ‖g1 − g2‖² = 5 → α = 0.8, d = (0.8, 0.4).
    J = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    direction, weights = make("mgda", epsilon=1e-6).aggregate(J, torch.ones(2))
    torch.testing.assert_close(direction, torch.tensor([0.8, 0.4]), atol=1e-4, rtol=0)
    torch.testing.assert_close(weights, torch.tensor([0.8, 0.2]), atol=1e-4, rtol=0)
    # no conflict and g1 shorter than its projection: α clips to 1 → d = g1
    J = torch.tensor([[1.0, 0.0], [2.0, 1.0]])  # (g2 − g1)·g2 = (1, 1)·(2, 1) = 3 > ‖g1 − g2‖² = 2 → α = 1
    direction, _ = make("mgda", epsilon=1e-6).aggregate(J, torch.ones(2))
    torch.testing.assert_close(direction, torch.tensor([1.0, 0.0]), atol=1e-4, rtol=0)


def test_pcgrad_conflicting_pair_by_hand():
    # g1 = (1, 0), g2 = (−1, 1): g1·g2 = −1 < 0, so each loses its projection on the other (Yu et al., Alg. 1):
    # g1' = g1 − (−1/2) g2 = (0.5, 0.5); g2' = g2 − (−1/1) g1 = (0, 1); the update is their sum, (0.5, 1.5).
    J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    direction, _ = make("pcgrad").aggregate(J, torch.ones(2))
    torch.testing.assert_close(direction, torch.tensor([0.5, 1.5]), atol=1e-6, rtol=0)
    # no conflict: the plain sum
    J = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(make("pcgrad").aggregate(J, torch.ones(2))[0], torch.tensor([2.0, 1.0]))


def test_cagrad_with_c_0_is_the_mean_gradient():
    pytest.importorskip("cvxpy", reason="CAGrad needs the solvers extra (cvxpy)")
    J = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.0], [2.0, 3.0, -1.0]])
    direction, _ = make("cagrad", tasks=("a", "b", "c"), c=0.0).aggregate(J, torch.ones(3))
    torch.testing.assert_close(direction, torch.tensor([2 / 3, 4 / 3, 1 / 3]), atol=1e-5, rtol=0)


def test_uw_reaches_its_closed_form_optimum():
    # Kendall et al.: ½ e^{−s} L + ½ s is minimal at s = log L; the weight there is ½ e^{−s} = 1 / (2L).
    strategy = make("uw")
    losses = [4.0, 0.25]
    opt = torch.optim.SGD(strategy.parameters(), lr=0.5)
    for _ in range(400):
        opt.zero_grad()
        strategy.scalarize(torch.tensor(losses)).backward()
        opt.step()
    torch.testing.assert_close(strategy.parameters()[0].detach(), torch.log(torch.tensor(losses)), atol=1e-5, rtol=0)
    _, weights = loss_weights(strategy, losses)
    torch.testing.assert_close(weights, torch.tensor([1 / 8, 2.0]), atol=1e-5, rtol=0)


def test_dwa_weights_from_a_given_loss_history_temperature_2():
    # period 2: epoch 1 = steps 1–2 with losses (1, 2), epoch 2 = steps 3–4 with (0.5, 1.8). In epochs 1 and 2 the
    # weights are 1; in epoch 3, w = (0.5/1, 1.8/2) = (0.5, 0.9), λ = 2 softmax(w / 2):
    # e^{0.25} = 1.284025, e^{0.45} = 1.568312 → λ = (0.900332, 1.099668) (Liu et al., eq. 7).
    strategy = make("dwa", temperature=2.0, period=2)
    for it, losses in enumerate([[1.0, 2.0], [1.0, 2.0], [0.5, 1.8], [0.5, 1.8]], start=1):
        _, weights = loss_weights(strategy, losses)
        torch.testing.assert_close(weights, torch.ones(2))
        strategy.after_step(it, None)
    _, weights = loss_weights(strategy, [7.0, 3.0])  # this epoch's own losses do not enter its weights
    torch.testing.assert_close(weights, torch.tensor([0.900332, 1.099668]), atol=1e-6, rtol=0)
    assert math.isclose(float(weights.sum()), 2.0, rel_tol=1e-6)


def test_dwa_default_period_is_one_pass_over_the_training_set():
    assert make("dwa").period == 4  # n_train 8, batch 2


def test_gradnorm_weight_update_with_the_papers_alpha():
    # ‖g1‖ = ‖(3, 4)‖ = 5, ‖g2‖ = ‖(0, 2)‖ = 2, α = 1.5, w starts at (1, 1), SGD lr 0.01, then Σw renormalised to 2.
    # Step 1 (L = L(0) = (2, 1)): r = (1, 1), G = (5, 2), Ḡ = 3.5, target (3.5, 3.5):
    #   ∂L_grad/∂w = (sign(5 − 3.5)·5, sign(2 − 3.5)·2) = (5, −2); w = (0.95, 1.02) → ×2/1.97 = (0.964467, 1.035533).
    #   The update applied is Σ w_t g_t with the weights before their step: (3, 4) + (0, 2) = (3, 6).
    # Step 2 (L = (1.8, 0.5)): ratios (0.9, 0.5), r = (1.285714, 0.714286), G = (4.822335, 2.071066), Ḡ = 3.446701,
    #   target = Ḡ r^1.5 = (5.024817, 2.080710): both below target → ∂ = (−5, −2) (with α = 0, task 1 would be
    #   above Ḡ: +5); w = (1.014467, 1.055533) → ×2/2.07 = (0.980161, 1.019839).
    strategy = make("gradnorm", alpha=1.5)
    (w,) = strategy.parameters()
    opt = torch.optim.SGD([w], lr=0.01)
    J = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    expected = [((3.0, 6.0), (5.0, -2.0), (0.964467, 1.035533)),
                ((0.964467 * 3, 0.964467 * 4 + 1.035533 * 2), (-5.0, -2.0), (0.980161, 1.019839))]
    for it, (losses, (direction, grad, after)) in enumerate(zip([[2.0, 1.0], [1.8, 0.5]], expected), start=1):
        opt.zero_grad(set_to_none=True)
        d, _ = strategy.aggregate(J, torch.tensor(losses))
        torch.testing.assert_close(d, torch.tensor(direction), atol=1e-5, rtol=0)
        torch.testing.assert_close(w.grad, torch.tensor(grad))
        opt.step()
        strategy.after_step(it, None)
        torch.testing.assert_close(w.detach(), torch.tensor(after), atol=1e-5, rtol=0)


def test_every_strategy_declares_paper_kind_and_backend():
    for name in WEIGHTINGS.names():
        cls = WEIGHTINGS.get(name)
        assert cls.kind in ("loss", "gradient") and cls.paper and cls.backend, name
        assert set(cls.checks) <= set(cls.cfg_keys), name
