"""Weighting strategies: how the per-task losses of one step become the parameter gradients.

A strategy is one file in ``weightings/`` with one decorator (``@register_weighting("name")``); the engine calls
its ``Combiner`` once per step with the per-task losses (each task's final and deep-supervision terms, times the
task's recipe weight, ``loss_weights.<task>``). Two kinds:

- **loss**: a scalarizer of the loss vector (UW, DWA, FAMO, ...; torchjd's ``scalarization``); one backward.
  The weights it applies are the derivatives of its scalar with respect to each loss, logged per iteration.
- **gradient**: an aggregator of the per-task gradients (MGDA, PCGrad, CAGrad, ...; torchjd's ``aggregation``).
  By default the Jacobian is taken over every parameter that more than one task's loss reaches (found once by
  walking the autograd graph), one backward per task from that task's own loss; a parameter only one task
  reaches gets that task's gradient. With the option
  ``rep: true`` it is taken at the backbone's output features instead (MGDA-UB, LibMTL's ``rep_grad``): one
  backward per task through the decoders only, then one through the backbone with the aggregated feature gradient.

Data parallel: N processes equal one. A loss strategy sees the globally averaged loss values (each rank's losses
carry the global value and their own gradient, so DDP's average is the one-process gradient). A gradient strategy
aggregates once the globally averaged Jacobian (its rows all-reduced); at the shared representation the features
differ per rank, so there the Gramian is all-reduced (the Gramian of the global feature Jacobian is the sum of the
ranks' Gramians over N²: the ranks' blocks are disjoint), which only Gramian-based aggregators can use.
"""
from __future__ import annotations

import importlib.util
import math
from contextlib import nullcontext
from typing import Any, Callable

import torch
import torch.distributed as dist

from mtbench.distributed import context
from mtbench.recipe_check import ConfigError, check_keys, check_value
from mtbench.registry import TASKS, WEIGHTINGS


class StrategyFailure(RuntimeError):
    """A strategy that produced no usable weights on a step (e.g. a solver that failed and has no fallback); the
    run is recorded as failed with this reason rather than training on NaN weights."""


class Strategy:
    """One weighting strategy. Subclasses set the class attributes and implement their kind's hook."""

    #: "loss" (combines the loss values) or "gradient" (combines the per-task gradients)
    kind: str = "loss"
    #: the paper, as "Authors, Title, Venue year"
    paper: str = ""
    #: what computes it: a torchjd class (``torchjd.aggregation.MGDA``) or the in-house file
    backend: str = ""
    #: option -> default; the recipe's ``weighting.<name>`` may set these (``--set weighting.<name>.<opt>=v``)
    cfg_keys: dict[str, Any] = {}
    #: option -> (check, "what it must be"), checked before any run starts
    checks: dict[str, tuple[Callable[[Any], bool], str]] = {}
    #: importable modules it needs, and the pip extra that installs them
    requires: tuple[str, ...] = ()
    extra: str = ""

    def __init__(self, tasks: list[str], options: dict[str, Any], setup: dict[str, Any]):
        self.tasks, self.options, self.setup = list(tasks), dict(options), dict(setup)

    # --- what every strategy may override -----------------------------------------------------------------
    def parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the run's optimizer trains with the model (UW's log-variances); weight decay 0."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """Tensors, numbers, lists and dicts only: it goes into the checkpoint, loaded with weights_only=True."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def to(self, device: torch.device) -> "Strategy":
        return self

    #: set by a strategy that must see the losses again after the optimizer step (FAMO)
    needs_losses_after_step = False

    def after_step(self, iteration: int, losses_after: torch.Tensor | None) -> None:
        """Called once after each optimizer step (``iteration`` steps done), with the batch's losses recomputed
        after the step (globally averaged) where ``needs_losses_after_step``."""


class LossStrategy(Strategy):
    kind = "loss"

    def scalarize(self, losses: torch.Tensor) -> torch.Tensor:
        """The scalar to backpropagate, from the vector of (globally averaged) task losses."""
        raise NotImplementedError


class GradientStrategy(Strategy):
    kind = "gradient"

    def aggregator(self):
        """The torchjd Aggregator (built once per run)."""
        raise NotImplementedError

    def _agg(self):
        if getattr(self, "_aggregator", None) is None:
            self._aggregator = self.aggregator()
        return self._aggregator

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The update direction from the (T × n) Jacobian, and the weights it implies where the aggregator has them
        (a torchjd ``WeightedAggregator``), read with a forward hook as torchjd's own ``jac_to_grad`` does."""
        from torchjd.aggregation import WeightedAggregator

        agg = self._agg()
        if not isinstance(agg, WeightedAggregator):
            return agg(jacobian), None
        seen: list[torch.Tensor] = []
        handle = agg.weighting.register_forward_hook(lambda m, i, out: seen.append(out))
        try:
            direction = agg(jacobian)
        finally:
            handle.remove()
        return direction, seen[-1]

    @property
    def gramian_based(self) -> bool:
        from torchjd.aggregation import GramianWeightedAggregator

        return isinstance(self._agg(), GramianWeightedAggregator)

    def gramian_weights(self, gramian: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """The weights from the Gramian alone (what data-parallel aggregation at the representation uses)."""
        return self._agg().gramian_weighting(gramian)

    def state_dict(self) -> dict[str, Any]:
        return {}


# --- the two families torchjd provides ----------------------------------------------------------------------

def _bool() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, bool)), "true or false"


def number(lo: float = 0.0, strict: bool = False, hi: float = math.inf) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
            (v > lo if strict else v >= lo) and v <= hi

    return ok, f"a number {'>' if strict else '≥'} {lo:g}" + (f" and ≤ {hi:g}" if hi != math.inf else "")


def integer(lo: int = 1) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo), f"an integer ≥ {lo}"


#: the option every gradient strategy takes: where to aggregate
GRADIENT_KEYS: dict[str, Any] = {"rep": False}
GRADIENT_CHECKS = {"rep": _bool()}


class TorchjdAggregation(GradientStrategy):
    """A torchjd aggregator, built from the options by ``build(options, n_tasks)``."""

    def build(self):
        raise NotImplementedError

    def aggregator(self):
        return self.build()

    def state_dict(self) -> dict[str, Any]:
        return {}


class TorchjdScalarization(LossStrategy):
    """A torchjd scalarizer (an nn.Module; its parameters and buffers are the strategy's state)."""

    def __init__(self, tasks, options, setup):
        super().__init__(tasks, options, setup)
        self.scalarizer = self.build()

    def build(self):
        raise NotImplementedError

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.scalarizer.parameters())

    def to(self, device: torch.device) -> "Strategy":
        self.scalarizer.to(device)
        return self

    def scalarize(self, losses: torch.Tensor) -> torch.Tensor:
        return self.scalarizer(losses)

    def state_dict(self) -> dict[str, Any]:
        return {"module": {k: v.detach().clone() for k, v in self.scalarizer.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scalarizer.load_state_dict(state["module"])


# --- options ------------------------------------------------------------------------------------------------


def strategy_options(name: str, recipe: dict[str, Any]) -> dict[str, Any]:
    """The options of strategy ``name``: its defaults, updated by the recipe's ``weighting.<name>``."""
    cls = WEIGHTINGS.get(name)
    given = (recipe.get("weighting") or {}).get(name) or {}
    return {**cls.cfg_keys, **given}


def check_strategy(name: str, recipe: dict[str, Any], dependencies: bool = True) -> None:
    """Name, options and (``dependencies``) the optional packages of a strategy: a ConfigError before any run."""
    try:
        cls = WEIGHTINGS.get(name)
    except KeyError as e:
        raise ConfigError(str(e)) from None
    given = (recipe.get("weighting") or {}).get(name) or {}
    check_keys(f"weighting.{name}.", given, cls.cfg_keys, recipe.get("name", "?"))
    for key, value in given.items():
        if key in cls.checks:
            check_value(f"weighting.{name}.{key}", value, cls.checks[key], recipe.get("name", "?"))
    missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
    if dependencies and missing:
        raise ConfigError(f"weighting strategy '{name}' needs {', '.join(missing)}, which is not installed: "
                          f"pip install -c constraints.txt -e \".[{cls.extra}]\" (or pick another strategy; see "
                          f"--list)")


# --- the recipe's per-task loss weights -------------------------------------------------------------------------

def default_loss_weight(task: str, profile: str | None = None) -> float | None:
    """The paper's weight of ``task`` for a dataset profile; with no profile, the weight if every profile has the
    same one (else None)."""
    weights = TASKS.get(task).weights
    if profile is not None:
        return float(weights[profile])
    values = set(map(float, weights.values()))
    return values.pop() if len(values) == 1 else None


def changed_loss_weights(recipe: dict[str, Any], tasks) -> dict[str, float]:
    """The recipe's ``loss_weights`` of ``tasks`` that are not the papers' (what enters a run's id)."""
    given = recipe.get("loss_weights") or {}
    return {t: float(given[t]) for t in sorted(tasks) if t in given
            and float(given[t]) != default_loss_weight(t)}


def resolved_loss_weights(recipe: dict[str, Any], tasks, profile: str) -> dict[str, float]:
    """Each task's loss weight for this run: the recipe's, else the paper's for the dataset's profile."""
    given = recipe.get("loss_weights") or {}
    return {t: float(given[t]) if t in given else default_loss_weight(t, profile) for t in tasks}


def check_recipe(recipe: dict[str, Any]) -> None:
    """The recipe's ``loss_weights`` and the option values of every strategy its ``weighting`` section names."""
    check_loss_weights(recipe)
    for name in recipe.get("weighting") or {}:
        check_strategy(name, recipe, dependencies=False)


def check_loss_weights(recipe: dict[str, Any]) -> None:
    given = recipe.get("loss_weights") or {}
    known = TASKS.names()
    check_keys("loss_weights.", given, known, recipe.get("name", "?"))
    for t, v in given.items():
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"recipe '{recipe.get('name', '?')}': loss_weights.{t} must be a number ≥ 0, got {v!r}")


# --- the engine's side ----------------------------------------------------------------------------------------

def _leaf_parameters(root: torch.Tensor, wanted: dict[int, torch.nn.Parameter]) -> set[int]:
    """ids of the parameters in ``wanted`` that ``root``'s autograd graph reaches."""
    found, seen, stack = set(), set(), [root.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        var = getattr(fn, "variable", None)
        if var is not None and id(var) in wanted:
            found.add(id(var))
        stack.extend(f for f, _ in fn.next_functions)
    return found


def _average(tensors: list[torch.Tensor]) -> None:
    """In-place mean over the ranks (one all-reduce of their concatenation); nothing on one process."""
    ctx = context()
    if not ctx.enabled or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    for t, v in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(v.view_as(t))


class Combiner:
    """What the engine calls: per step ``backward(losses)`` (sets every parameter's ``.grad``, returns the task
    weights to log or None), ``after_step``; ``state_dict`` for the checkpoint; ``describe`` for the record."""

    def __init__(self, name: str, options: dict[str, Any], tasks: list[str], model: torch.nn.Module,
                 backbone: torch.nn.Module, setup: dict[str, Any]):
        self.name, self.tasks, self.model, self.backbone = name, list(tasks), model, backbone
        cls = WEIGHTINGS.get(name)
        self.strategy: Strategy = cls(self.tasks, options, setup)
        self.kind = cls.kind
        self.fixed = name == "fixed"
        self.rep = bool(options.get("rep", False)) and self.kind == "gradient"
        self._partition: tuple[list, list] | None = None
        self._features: list[torch.Tensor] | None = None
        if self.kind == "gradient":
            self.strategy._agg()  # built now: a missing solver or a bad option fails before the first step
        if self.rep:
            if context().enabled and not self.strategy.gramian_based:
                raise ConfigError(f"weighting '{name}' with rep: true cannot run data parallel: its aggregator is not "
                                  f"Gramian-based, and the representation differs per process. Use rep: false, one "
                                  f"process, or a Gramian-based strategy (see --list)")
            backbone.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output) -> None:
        feats = list(output.values()) if isinstance(output, dict) else \
            list(output) if isinstance(output, (list, tuple)) else [output]
        self._features = [f for f in feats if isinstance(f, torch.Tensor) and f.requires_grad]

    def forward_context(self, net: torch.nn.Module):
        """A gradient strategy reduces its own gradients: DDP must not all-reduce behind it."""
        if self.kind == "gradient" and isinstance(net, torch.nn.parallel.DistributedDataParallel):
            return net.no_sync()
        return nullcontext()

    # --- one step ---------------------------------------------------------------------------------------------
    def backward(self, losses: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if self.fixed:
            sum(losses.values()).backward()  # today's objective, term for term
            return None
        vec = torch.stack([losses[t] for t in self.tasks]).float()
        if self.kind == "loss":
            return self._loss_backward(vec)
        if self._partition is None and not self.rep:
            self._partition = self._split([losses[t] for t in self.tasks])
        return self._rep_backward(losses, vec) if self.rep else self._shared_backward(losses, vec)

    def _global(self, vec: torch.Tensor) -> torch.Tensor:
        """The losses with their global mean as value and this rank's gradient (identity on one process)."""
        ctx = context()
        if not ctx.enabled:
            return vec
        mean = vec.detach().clone()
        dist.all_reduce(mean)
        return vec - vec.detach() + mean / ctx.world_size

    def _loss_backward(self, vec: torch.Tensor) -> torch.Tensor:
        values = self._global(vec)
        total = self.strategy.scalarize(values)
        if not torch.isfinite(total):
            raise StrategyFailure(f"weighting '{self.name}' gave a non-finite objective ({total.item()}) from losses "
                                  f"{values.detach().tolist()}")
        weights = torch.autograd.grad(total, values, retain_graph=True)[0]
        total.backward()
        return weights.detach()

    def _params(self) -> list[torch.nn.Parameter]:
        extra = {id(p) for p in self.strategy.parameters()}
        return [p for p in self.model.parameters() if p.requires_grad and id(p) not in extra]

    def _split(self, losses: list[torch.Tensor]) -> tuple[list, list]:
        """(shared, own): parameters more than one task's loss reaches, and those exactly one does (the graph's
        structure is the model's, so this is found once, on the first step)."""
        params = self._params()
        wanted = {id(p): p for p in params}
        reach: dict[int, int] = {}
        for loss in losses:
            for pid in _leaf_parameters(loss, wanted):
                reach[pid] = reach.get(pid, 0) + 1
        return [p for p in params if reach.get(id(p), 0) > 1], [p for p in params if reach.get(id(p), 0) == 1]

    def _check(self, direction: torch.Tensor, weights: torch.Tensor | None, vec: torch.Tensor) -> None:
        finite = bool(torch.isfinite(direction).all()) and (weights is None or bool(torch.isfinite(weights).all()))
        if not finite:
            raise StrategyFailure(f"weighting '{self.name}' gave non-finite weights or gradients "
                                  f"(weights {None if weights is None else weights.tolist()}, losses "
                                  f"{vec.detach().tolist()}); the run stops here instead of training on NaN")

    def _task_rows(self, losses: dict[str, torch.Tensor], rows_of: list[torch.Tensor],
                   summed_of: list[torch.Tensor]) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
        """One backward per task from its own loss tensor: the Jacobian (one row per task) over ``rows_of`` (None
        when it is empty) and the sum of the task gradients over ``summed_of``. Each pass visits only what its
        task's loss reaches; a row of a stacked-loss Jacobian would carry zeros through every other task's head."""
        rows, summed = [], [None] * len(summed_of)
        for task in self.tasks:
            grads = torch.autograd.grad(losses[task].float(), rows_of + summed_of, retain_graph=True,
                                        allow_unused=True)
            if rows_of:
                rows.append(torch.cat([(torch.zeros_like(x) if g is None else g).reshape(-1)
                                       for x, g in zip(rows_of, grads[:len(rows_of)])]))
            summed = [a if g is None else g if a is None else a + g for a, g in zip(summed, grads[len(rows_of):])]
        return (torch.stack(rows) if rows else None), summed

    def _shared_backward(self, losses: dict[str, torch.Tensor], vec: torch.Tensor) -> torch.Tensor | None:
        shared, own = self._partition
        J, summed = self._task_rows(losses, shared, own)
        for p, g in zip(own, summed):  # a parameter one task reaches: that task's gradient
            p.grad = g
        _average([p.grad for p in own if p.grad is not None])
        if not shared:
            return None
        _average([J])  # the globally averaged Jacobian, aggregated once
        direction, weights = self.strategy.aggregate(J, self._global(vec).detach())
        self._check(direction, weights, vec)
        for p, g in zip(shared, direction.split([p.numel() for p in shared])):
            p.grad = g.view_as(p).to(p.dtype)
        return None if weights is None else weights.detach()

    def _rep_backward(self, losses: dict[str, torch.Tensor], vec: torch.Tensor) -> torch.Tensor | None:
        """The Jacobian at the backbone's features, aggregated there and carried through the backbone once."""
        feats = self._features
        if not feats:
            raise StrategyFailure(f"weighting '{self.name}' with rep: true found no backbone features in this step")
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        rest = [p for p in self._params() if id(p) not in backbone_ids]
        J, summed = self._task_rows(losses, feats, rest)
        for p, g in zip(rest, summed):  # decoder parameters: the plain sum of the task gradients
            p.grad = g
        values = self._global(vec).detach()
        ctx = context()
        if ctx.enabled:  # the ranks' feature blocks are disjoint: G = Σ_r J_r J_rᵀ / N²
            G = J @ J.T
            dist.all_reduce(G)
            weights = self.strategy.gramian_weights(G / ctx.world_size ** 2, values)
            direction = weights.to(J.dtype) @ J
        else:
            direction, weights = self.strategy.aggregate(J, values)
        self._check(direction, weights, vec)
        grads = [g.view_as(f) for f, g in zip(feats, direction.split([f.numel() for f in feats]))]
        torch.autograd.backward(feats, grads)
        self._features = None
        _average([p.grad for p in self._params() if p.grad is not None])
        return None if weights is None else weights.detach()

    def after_step(self, iteration: int, recompute: Callable[[], dict[str, torch.Tensor]]) -> None:
        after = None
        if self.strategy.needs_losses_after_step:
            with torch.no_grad():
                losses = recompute()
                after = self._global(torch.stack([losses[t] for t in self.tasks]).float())
        self.strategy.after_step(iteration, after)

    # --- state and record -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state and state.get("name") == self.name:
            self.strategy.load_state_dict(state["state"])

    def describe(self) -> dict[str, Any]:
        cls = type(self.strategy)
        shared = None
        if self.kind == "gradient":
            shared = "representation (backbone features)" if self.rep else "parameters reached by more than one task"
        return {"name": self.name, "kind": self.kind, "paper": cls.paper, "backend": cls.backend,
                "options": dict(self.strategy.options), "aggregated_at": shared}
