"""``python bench.py [options]``: expand a grid of runs, execute it (locally or on SLURM), write the leaderboard."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from mtbench.cli.commands import SUBCOMMANDS

EPILOG = "subcommands (each has its own --help):\n" + "\n".join(
    f"  python bench.py {name:<14} {text}" for name, (_, text) in SUBCOMMANDS.items()
) + """

examples:
  python bench.py                                  # baseline + single-task refs on synthetic scenes (CPU, minutes)
  python bench.py --methods baseline --dataset synthetic --tasks pascal --seeds 0,1,2
  python bench.py --methods baseline --dataset nyud --data-dir /data/NYUDv2 --recipe nyud
  python bench.py leaderboard results
"""



SEED_FORMATS = "seeds are integers: N, a list N,M,... or a range N-M (e.g. 0, 0,1,2 or 0-2; combined: 0-2,5)"


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                if int(hi) < int(lo):
                    raise argparse.ArgumentTypeError(f"'{part}': a range N-M needs N <= M; {SEED_FORMATS}")
                seeds.extend(range(int(lo), int(hi) + 1))
            elif part:
                seeds.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}': {SEED_FORMATS}") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seeds in '{text}'; {SEED_FORMATS}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"'{text}' names a seed twice")
    return seeds


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench.py",
        description="mtbench: train and evaluate multi-task dense prediction methods, then write a Δm leaderboard. "
                    "With no arguments: the multi-task baseline and its single-task references on the embedded "
                    "synthetic scenes, CPU-sized.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="baseline",
                   help="comma-separated method names (default: baseline). Single-task references needed for Δm "
                        "are added automatically. See --list.")
    p.add_argument("--weighting", default="fixed",
                   help="comma-separated weighting strategies: how the task losses are combined (default: fixed, "
                        "the recipe's loss_weights summed). The grid is methods x strategies x seeds; single-task "
                        "references are trained once. Options: --set weighting.<name>.<option>=V. See --list.")
    p.add_argument("--dataset", default="synthetic", help="dataset name (default: synthetic). See --list.")
    p.add_argument("--tasks", default=None,
                   help="task preset 'nyud' (semseg,depth,normals,edge) or 'pascal' (semseg,human_parts,sal,normals,"
                        "edge), or a comma list; default: the dataset's own task set")
    p.add_argument("--backbone", default=None, help="backbone name (default: the recipe's). See --list.")
    p.add_argument("--backbone-weights", default=None, metavar="PATH",
                   help="local checkpoint file for the backbone (nothing is downloaded); default: random init, "
                        "which the run record states")
    p.add_argument("--seeds", type=parse_seeds, default=[0], help="seeds, e.g. 0,1,2 or 0-2 (default: 0)")
    p.add_argument("--recipe", default=None,
                   help="recipe name in configs/ or a YAML path (default: the dataset's own recipe: smoke for "
                        "synthetic, nyud for nyud, pascal for pascal; any other dataset must name one)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set iterations=100 --set optimizer.lr=0.01 (repeatable)")
    p.add_argument("--data-dir", default=None, help="dataset root for real datasets (nyud, pascal)")
    p.add_argument("--results", default="results", help="results directory (default: results)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--devices", type=int, default=1,
                   help="processes (GPUs) per node for each run, data parallel; with --executor slurm one task per "
                        "GPU, times --nodes. The recipe's batch size is the global batch (default: 1)")
    p.add_argument("--executor", default="local", choices=["local", "slurm"],
                   help="where runs execute: local = in-process, sequential (default); slurm = one submitit job "
                        "array per grid")
    s = p.add_argument_group("SLURM (with --executor slurm; defaults from --cluster YAML)")
    s.add_argument("--cluster", default=None, metavar="YAML", help="cluster config in slurm/ (name or path)")
    s.add_argument("--partition", default=None, help="SLURM partition (sbatch -p)")
    s.add_argument("--account", default=None, help="SLURM account to charge (sbatch -A)")
    s.add_argument("--qos", default=None, help="SLURM quality of service (sbatch --qos)")
    s.add_argument("--nodes", type=int, default=None, help="nodes per run")
    s.add_argument("--gpus-per-node", type=int, default=None, help="GPUs per node (one task per GPU)")
    s.add_argument("--cpus-per-task", type=int, default=None, help="CPU cores per task (data loader workers)")
    s.add_argument("--mem-gb", type=int, default=None, help="memory per node in GB")
    s.add_argument("--time-min", type=int, default=None, help="time limit per job in minutes")
    s.add_argument("--constraint", default=None, help="node feature constraint (sbatch -C), e.g. a100")
    s.add_argument("--sbatch", dest="sbatch_extra", action="append", default=[], metavar="FLAG",
                   help="extra sbatch flag, e.g. --sbatch=--exclusive (repeatable)")
    s.add_argument("--array-parallelism", type=int, default=None, help="max jobs of the array running at once")
    s.add_argument("--no-wait", action="store_true", help="submit and return; follow with `bench.py status`")
    p.add_argument("--force", action="store_true",
                   help="train the grid's runs again from nothing: their records, checkpoints and logs are removed "
                        "first (without it, finished runs are skipped and unfinished ones resume)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each finished run's full training checkpoint (weights + optimizer + RNG: resumable, "
                        "several times the model's size); by default a finished run keeps only its final weights "
                        "(checkpoints/final.pt)")
    p.add_argument("--max-retries", type=int, default=None,
                   help="times a failed run is retried by re-running the same command (default: 2, or "
                        "$MTBENCH_MAX_RETRIES, or the cluster YAML)")
    p.add_argument("--no-report", action="store_true",
                   help="skip the HTML report at the end of the grid (<results>/report/index.html; `python bench.py "
                        "report RESULTS` writes it at any time). Also: MTBENCH_NO_REPORT=1")
    p.add_argument("--list", action="store_true", help="list registered methods, tasks, datasets, backbones, recipes")
    return p


def list_registered(console: Console) -> int:
    from mtbench.config import recipe_names
    from mtbench.registry import BACKBONES, DATASETS, METHODS, TASKS

    for label, names in [("methods", METHODS.names()), ("tasks", TASKS.names()), ("datasets", DATASETS.names()),
                         ("backbones", BACKBONES.names()), ("recipes", recipe_names())]:
        console.print(f"[bold]{label}:[/bold] {', '.join(names)}", soft_wrap=True)
    from mtbench.registry import WEIGHTINGS

    console.print("[bold]weighting strategies[/bold] (--weighting a,b; options: --set weighting.<name>.<option>=V):",
                  soft_wrap=True)
    for name in WEIGHTINGS.names():
        cls = WEIGHTINGS.get(name)
        opts = ", ".join(f"{k}={v}" for k, v in cls.cfg_keys.items()) or "no options"
        needs = f"; needs pip extra [{cls.extra}]" if cls.requires else ""
        console.print(f"  {name} ({cls.kind}-based; {cls.backend}; {opts}{needs}): {cls.paper}", markup=False,
                      highlight=False, soft_wrap=True)
    return 0


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    from mtbench.config import load_recipe
    from mtbench.data.base import parse_tasks
    from mtbench.launch import GridSpec, expand_grid, run_local
    from mtbench.leaderboard import to_markdown, write_leaderboard
    from mtbench.registry import DATASETS

    if args.list:
        return list_registered(console)
    from mtbench.config import default_recipe

    recipe = load_recipe(args.recipe or default_recipe(args.dataset), args.overrides)
    builder = DATASETS.get(args.dataset)
    tasks = parse_tasks(args.tasks, getattr(builder, "default_tasks", ("semseg", "depth", "normals", "edge")))
    from mtbench.registry import TASKS

    for t in tasks:
        TASKS.get(t)
    if args.backbone_weights and not Path(args.backbone_weights).is_file():
        raise FileNotFoundError(f"--backbone-weights {args.backbone_weights}: no such file. Weights cannot be "
                                f"downloaded here; pass a local checkpoint file")
    spec = GridSpec(methods=[m.strip() for m in args.methods.split(",") if m.strip()], dataset=args.dataset,
                    tasks=tasks, backbone=args.backbone or recipe["backbone"], seeds=args.seeds, recipe=recipe,
                    data_dir=args.data_dir, backbone_weights=args.backbone_weights,
                    weightings=tuple(w.strip() for w in args.weighting.split(",") if w.strip()) or ("fixed",))
    runs = expand_grid(spec)
    strategies = sorted({r.weighting for r in runs} - {"fixed"})
    console.print(f"grid: {len(runs)} runs ({', '.join(sorted({r.method for r in runs}))}"
                  + (f"; weighting {', '.join(sorted({r.weighting for r in runs}))}" if strategies else "") + ") on "
                  f"{spec.dataset} [{', '.join(tasks)}] with {'/'.join(dict.fromkeys(r.backbone for r in runs))}, "
                  f"recipe '{recipe['name']}'"
                  + (f" with --set {' '.join(recipe['overrides'])}" if recipe["overrides"] else "")
                  + f", seeds {spec.seeds} → {args.results}", soft_wrap=True, markup=False)
    # Pre-flight: names, devices vs batch, backbone options, split sizes, the data itself: once, before any run.
    from mtbench.preflight import check_grid

    if needs_training(runs, Path(args.results), args.force):
        check_grid(runs, args.devices, Path(args.results), lambda m: console.print(m, markup=False, soft_wrap=True))
    if args.executor == "slurm":
        from mtbench import slurm_launch

        outcome = slurm_launch.run_slurm(runs, Path(args.results), args, console)
        if args.no_wait:
            return 0
    else:
        from mtbench.runstate import max_retries_from

        outcome = run_local(runs, Path(args.results), args.device, args.force, console, max_retries_from(args),
                            devices=args.devices, keep_checkpoints=args.keep_checkpoints)
    failed = [k for k, v in outcome.items() if v.startswith("failed")]
    skipped: list[str] = []
    try:
        tables, path = write_leaderboard(Path(args.results), skipped=skipped)
    except OSError as e:  # e.g. a full disk: the runs' records are written, the table can be rebuilt later
        console.print(f"error: the leaderboard could not be written ({e}); rebuild it with: python bench.py "
                      f"leaderboard {args.results}", style="red", markup=False, soft_wrap=True)
        return 1 if failed else 2
    keys = {r.setting_key for r in runs}
    for t in tables:
        if t.slug.rsplit("_", 1)[-1] in keys:
            console.print(to_markdown(t), markup=False, highlight=False, soft_wrap=True)
    for note in skipped:
        console.print(note, style="yellow", markup=False, soft_wrap=True)
    console.print(f"leaderboard written to {path}", markup=False, soft_wrap=True)
    if not args.no_report and os.environ.get("MTBENCH_NO_REPORT") != "1":
        write_report(Path(args.results), console)
    if failed:
        console.print(f"{len(failed)} run(s) failed: {', '.join(failed)}", style="red", markup=False, soft_wrap=True)
        return 1
    return 0


def needs_training(runs, results_dir: Path, force: bool) -> bool:
    """Whether any run may train: a grid whose runs are all finished needs no data, no devices, no checks."""
    from mtbench.records import finished, runs_dir

    return force or not all(finished(runs_dir(results_dir) / r.run_id) for r in runs)


def write_report(results: Path, console: Console) -> None:
    """The page of the whole results directory, like the leaderboard at the end of every grid. The runs' records
    are what counts: a report that cannot be drawn is said, with the command that draws it again."""
    from mtbench.report.build import build_report

    try:
        build_report(results, console=console)
    except Exception as e:  # noqa: BLE001 - any failure here must not hide the grid's own outcome
        console.print(f"error: the report could not be written ({type(e).__name__}: {e}); rebuild it with: "
                      f"python bench.py report {results}", style="red", markup=False, soft_wrap=True)
