"""Where the default job's CPU time goes, phase by phase: ``python bench.py``'s grid run in this process with
each phase's functions wrapped by a CPU-time meter.

Not a test. CPU time (this process's threads + the worker processes it reaped), not wall time: on a shared
machine wall time measures the neighbours. Each phase is charged exclusively (a phase called inside another
is taken out of the outer one), so the rows add up to the total. ``--cprofile FILE`` also writes a cProfile
(timer: process CPU time) for drilling into one phase.

    python benchmarks/default_job_phases.py --results /tmp/phases -- --set iterations=20
    python benchmarks/default_job_phases.py --results /tmp/phases            # the default job itself
"""
from __future__ import annotations

import argparse
import functools
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_now() -> float:
    """CPU seconds of this process (all threads) plus its reaped children (evaluation workers, git)."""
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime


class PhaseMeter:
    """Exclusive CPU time per phase: time goes to the innermost active phase, the rest to ``other``."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.stack = ["other"]
        self.mark = cpu_now()

    def _charge(self) -> None:
        now = cpu_now()
        self.totals[self.stack[-1]] = self.totals.get(self.stack[-1], 0.0) + now - self.mark
        self.mark = now

    def wrap(self, owner, attr: str, phase: str) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def metered(*a, **kw):
            self._charge()
            self.stack.append(phase)
            self.calls[phase] = self.calls.get(phase, 0) + 1
            try:
                return fn(*a, **kw)
            finally:
                self._charge()
                self.stack.pop()

        setattr(owner, attr, metered)


def instrument(meter: PhaseMeter) -> None:
    """The phases of a local grid run, patched where the callers look them up."""
    from mtbench import checkpoint, engine, evaluation, launch, leaderboard, preflight
    from mtbench.data import synthetic
    from mtbench.metrics import boundary

    for owner, attr, phase in [
        (synthetic, "render_split", "scenes: render"),
        (synthetic, "_save_atomic", "scenes: write cache"),
        (synthetic, "read_cache", "scenes: read cache"),
        (synthetic.SyntheticDataset, "__getitem__", "train+eval: load samples"),
        (preflight, "check_grid", "preflight checks"),
        (engine, "build_model", "build model"),
        (engine, "run", "train steps (engine loop)"),
        (checkpoint, "load_latest", "checkpoint: resume check"),
        (checkpoint, "save", "checkpoint: save"),
        (checkpoint, "save_final", "checkpoint: save final"),
        (checkpoint, "prune", "checkpoint: prune"),
        (engine, "_evaluate", "evaluate model (no boundary)"),
        (evaluation, "_save_pngs", "evaluate: save PNGs"),
        (boundary.BoundaryEvaluator, "compute", "evaluate: boundary matching"),
        (engine, "fit_priors", "trivial: fit priors (train split)"),
        (engine, "evaluate_trivial", "trivial: score (val split)"),
        (engine, "count_flops", "FLOP count"),
        (engine, "environment", "environment (git, versions)"),
        (launch, "write_record", "write record"),
        (leaderboard, "write_leaderboard", "leaderboard"),
    ]:
        meter.wrap(owner, attr, phase)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", required=True, help="results directory of the measured grid (fresh = renders)")
    p.add_argument("--cprofile", default=None, help="also write a cProfile (process CPU time) to this file")
    p.add_argument("bench_args", nargs="*", help="arguments after -- go to bench.py (default: the default job)")
    args = p.parse_args()
    start = cpu_now()
    from mtbench import threads

    threads.configure_environment()
    import importlib

    for module in ("mtbench.cli.run", "mtbench.engine", "mtbench.launch", "mtbench.leaderboard"):
        importlib.import_module(module)  # what a run imports: torch, timm, rich, the registries
    from mtbench.registry import METHODS

    METHODS.names()  # loads every plug-in module, as the first registry lookup of a run does
    imports = cpu_now() - start
    meter = PhaseMeter()
    instrument(meter)
    from mtbench.cli import main as cli_main

    argv = ["--results", args.results, *args.bench_args]
    if args.cprofile:
        import cProfile

        prof = cProfile.Profile(time.process_time)
        rc = prof.runcall(cli_main, argv)
        prof.dump_stats(args.cprofile)
    else:
        rc = cli_main(argv)
    meter._charge()
    rows = sorted(meter.totals.items(), key=lambda kv: -kv[1])
    total = imports + sum(meter.totals.values())
    print(f"\nCPU seconds per phase (python benchmarks/default_job_phases.py --results {args.results}"
          f"{' -- ' + ' '.join(args.bench_args) if args.bench_args else ''}; pid {os.getpid()})")
    print(f"| phase | CPU s | share | calls |\n|---|---:|---:|---:|\n| imports (torch, timm, plug-ins) | "
          f"{imports:.1f} | {100 * imports / total:.0f}% | 1 |")
    for name, sec in rows:
        print(f"| {name} | {sec:.1f} | {100 * sec / total:.0f}% | {meter.calls.get(name, '')} |")
    print(f"| **total** | **{total:.1f}** | 100% | |")
    return rc


if __name__ == "__main__":
    sys.exit(main())
