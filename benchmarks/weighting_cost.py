"""Time of one training step under each weighting strategy, as a ratio to ``fixed``, on the baseline and on mqt.

Not a test: it answers "what does a strategy cost per step?". One synthetic batch at the smoke recipe's size
(CPU by default), one model per (method, strategy) from the same initial weights; the steps are the engine's own
sequence (forward under the strategy's context, per-task losses, ``Combiner.backward``, optimizer step,
``after_step``). Strategies are interleaved round by round in one process, so that a machine's drift hits all of
them alike; the table gives the median step and its ratio to the median ``fixed`` step of the same method.
Gradient strategies are timed twice: over the shared parameters (default) and at the representation (``rep``).

    python benchmarks/weighting_cost.py --methods baseline,mqt --rounds 5
    python benchmarks/weighting_cost.py --methods baseline --strategies fixed,uw,pcgrad --rounds 2 --set batch_size=2
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtbench import engine  # noqa: E402
from mtbench.config import RunConfig, load_recipe  # noqa: E402
from mtbench.data.loader import collate  # noqa: E402
from mtbench.objective import task_losses  # noqa: E402
from mtbench.optim import build_optimizer  # noqa: E402
from mtbench.registry import WEIGHTINGS  # noqa: E402
from mtbench.weighting import Combiner, resolved_loss_weights, strategy_options  # noqa: E402

TASKS = ("semseg", "depth", "normals", "edge")
# CPU sizes: mqt's released widths (embed 256) would dominate a CPU step; 64 keeps its structure.
SMOKE = ["methods.mqt.embed_dim=64"]


def variants(names: list[str]) -> list[tuple[str, str, dict]]:
    """(label, strategy, recipe options): every gradient strategy also at the representation."""
    out = []
    for name in names:
        out.append((name, name, {}))
        if WEIGHTINGS.get(name).kind == "gradient":
            out.append((f"{name} (rep)", name, {"rep": True}))
    return out


class Stepper:
    """One model + optimizer + combiner: ``step()`` is one engine training step on the fixed batch."""

    def __init__(self, model, backbone, tasks, info, recipe, strategy, options, batch, device):
        self.model = copy.deepcopy(model).to(device).train()
        backbone = getattr(self.model, "backbone", backbone)
        opts = strategy_options(strategy, {"weighting": {strategy: options}})
        self.combiner = Combiner(strategy, opts, list(tasks), self.model, backbone,
                                 {"n_train": 64, "batch_size": recipe["batch_size"]})
        self.combiner.strategy.to(device)
        self.opt = build_optimizer(self.model, recipe["optimizer"])
        if self.combiner.strategy.parameters():
            self.opt.add_param_group({"params": self.combiner.strategy.parameters(), "weight_decay": 0.0})
        self.tasks = tasks
        self.weights = resolved_loss_weights(recipe, list(tasks), info.loss_weight_profile)
        self.images = batch["image"].to(device)
        self.targets = {t: batch[t].to(device) for t in tasks}
        self.aux = getattr(self.model, "aux_losses", None)
        self.it = 0

    def losses(self):
        return task_losses(self.model(self.images), self.targets, self.tasks, self.weights, self.aux)

    def step(self) -> None:
        with self.combiner.forward_context(self.model):
            losses = self.losses()
        self.opt.zero_grad(set_to_none=True)
        self.combiner.backward(losses)
        self.opt.step()
        self.it += 1
        self.combiner.after_step(self.it, self.losses)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="baseline,mqt")
    p.add_argument("--strategies", default=",".join(WEIGHTINGS.names()),
                   help="comma list (default: every registered strategy; fixed is always included)")
    p.add_argument("--rounds", type=int, default=5, help="timed steps per strategy (after one warm-up step)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override on top of the smoke recipe, e.g. --set batch_size=4")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    device = torch.device(args.device)
    recipe = load_recipe("smoke", SMOKE + args.overrides)
    names = ["fixed"] + [n for n in args.strategies.split(",") if n and n != "fixed"]
    for n in names:
        WEIGHTINGS.get(n)
    table = Table(title=f"one training step vs fixed ({device.type}, synthetic {recipe['datasets']['synthetic']['height']}"
                        f"x{recipe['datasets']['synthetic']['width']}, batch {recipe['batch_size']}, 4 tasks, "
                        f"median of {args.rounds} interleaved rounds)")
    table.add_column("method")
    table.add_column("strategy")
    table.add_column("kind")
    table.add_column("step ms", justify="right")
    table.add_column("× fixed", justify="right")
    for method in [m for m in args.methods.split(",") if m]:
        cfg = RunConfig(method, "synthetic", TASKS, recipe["backbone"], 0, recipe)
        engine.seed_everything(0)
        with tempfile.TemporaryDirectory() as cache:  # the recipe's cache_dir, if set, wins
            train, _ = engine.build_data(cfg, Path(cache))
        batch = collate([train[i] for i in range(recipe["batch_size"])])
        model, tasks, backbone = engine.build_model(cfg, train.info)
        steppers = {}
        for label, strategy, options in variants(names):
            try:
                steppers[label] = (strategy, Stepper(model, backbone, tasks, train.info, recipe, strategy, options,
                                                     batch, device))
            except Exception as e:  # noqa: BLE001 — e.g. a solver not installed: that row says why
                console.print(f"{method} {label}: skipped ({type(e).__name__}: {e})", markup=False)
        times: dict[str, list[float]] = {k: [] for k in steppers}
        for _ in range(1 + args.rounds):  # the first round warms up (allocator, lazy imports, vmap)
            for label, (_, s) in steppers.items():
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                s.step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[label].append(time.perf_counter() - t0)
        base = statistics.median(times["fixed"][1:])
        for label, (strategy, _) in steppers.items():
            med = statistics.median(times[label][1:])
            table.add_row(method, label, WEIGHTINGS.get(strategy).kind, f"{med * 1e3:.1f}", f"{med / base:.2f}")
    console.print(table)
    console.print("command: python benchmarks/weighting_cost.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  markup=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
