"""Command line: ``python bench.py [run options]`` runs a grid; subcommands do the rest."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

SUBCOMMANDS = {
    "leaderboard": "rebuild the leaderboard from the run records in a results directory",
    "status": "one table of a grid: done / running / pending / failed per run, then the leaderboard",
    "eval-boundary": "score a folder of PNG edge maps by the BSDS protocol (odsF / oisF / AP), no MATLAB",
    "data": "'data check': verify a dataset folder (counts, shapes, ranges, unreadable files)",
    "profile": "params, GFLOPs, memory and images/s of methods at a dataset's input size",
}
# subcommand -> module with add_arguments(parser) and run(args) -> int (imported on use)
SUBCOMMAND_MODULES = {
    "status": "mtbench.status_cli",
    "eval-boundary": "mtbench.boundary_cli",
    "profile": "mtbench.profile_cli",
}

EPILOG = "subcommands (each has its own --help):\n" + "\n".join(
    f"  python bench.py {name:<14} {text}" for name, text in SUBCOMMANDS.items()
) + """

examples:
  python bench.py                                  # baseline + single-task refs on synthetic scenes (CPU, minutes)
  python bench.py --methods baseline --dataset synthetic --tasks pascal --seeds 0,1,2
  python bench.py --methods baseline --dataset nyud --data-dir /data/NYUDv2 --recipe nyud
  python bench.py leaderboard results
"""


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            seeds.extend(range(int(lo), int(hi) + 1))
        elif part:
            seeds.append(int(part))
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seeds in '{text}'")
    return seeds


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench.py",
        description="mtbench: train and evaluate multi-task dense prediction methods, then write a Δm leaderboard. "
                    "With no arguments: the multi-task baseline and its single-task references on the embedded "
                    "synthetic scenes, CPU-sized.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="baseline",
                   help="comma-separated method names (default: baseline). Single-task references needed for Δm "
                        "are added automatically. See --list.")
    p.add_argument("--dataset", default="synthetic", help="dataset name (default: synthetic). See --list.")
    p.add_argument("--tasks", default=None,
                   help="task preset 'nyud' (semseg,depth,normals,edge) or 'pascal' (semseg,human_parts,sal,normals,"
                        "edge), or a comma list; default: the dataset's own task set")
    p.add_argument("--backbone", default=None, help="backbone name (default: the recipe's). See --list.")
    p.add_argument("--backbone-weights", default=None, metavar="PATH",
                   help="local checkpoint file for the backbone (nothing is downloaded); default: random init, "
                        "which the run record states")
    p.add_argument("--seeds", type=parse_seeds, default=[0], help="seeds, e.g. 0,1,2 or 0-2 (default: 0)")
    p.add_argument("--recipe", default="smoke",
                   help="recipe name in configs/ or a YAML path (default: smoke, the CPU recipe)")
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
    p.add_argument("--force", action="store_true", help="re-run runs that already have a finished record")
    p.add_argument("--max-retries", type=int, default=None,
                   help="times a failed run is retried by re-running the same command (default: 2, or "
                        "$MTBENCH_MAX_RETRIES, or the cluster YAML)")
    p.add_argument("--list", action="store_true", help="list registered methods, tasks, datasets, backbones, recipes")
    return p


def leaderboard_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py leaderboard", description=SUBCOMMANDS["leaderboard"])
    p.add_argument("results_dir", help="a results directory (holding runs/<run_id>/record.json)")
    p.add_argument("--out", default=None, help="output directory (default: <results_dir>/leaderboards)")
    return p


def module_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    import importlib

    module = importlib.import_module(SUBCOMMAND_MODULES[name])
    p = argparse.ArgumentParser(prog=f"bench.py {name}", description=SUBCOMMANDS[name])
    module.add_arguments(p)
    return p, module


def data_parser() -> argparse.ArgumentParser:
    from mtbench.data import check

    p = argparse.ArgumentParser(prog="bench.py data", description=SUBCOMMANDS["data"])
    sub = p.add_subparsers(dest="action", required=True)
    check.add_arguments(sub.add_parser("check", help="verify a dataset folder"))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local files only
    console = Console()
    try:
        if argv and argv[0] == "leaderboard":
            return cmd_leaderboard(leaderboard_parser().parse_args(argv[1:]), console)
        if argv and argv[0] == "data":
            from mtbench.data import check

            return check.run(data_parser().parse_args(argv[1:]))
        if argv and argv[0] in SUBCOMMAND_MODULES:
            parser, module = module_parser(argv[0])
            return module.run(parser.parse_args(argv[1:]))
        return cmd_run(run_parser().parse_args(argv), console)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        console.print(f"[bold red]error:[/bold red] {e}", soft_wrap=True)
        return 2


def cmd_list(console: Console) -> int:
    from mtbench.config import recipe_names
    from mtbench.registry import BACKBONES, DATASETS, METHODS, TASKS

    for label, names in [("methods", METHODS.names()), ("tasks", TASKS.names()), ("datasets", DATASETS.names()),
                         ("backbones", BACKBONES.names()), ("recipes", recipe_names())]:
        console.print(f"[bold]{label}:[/bold] {', '.join(names)}", soft_wrap=True)
    return 0


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from mtbench.config import load_recipe
    from mtbench.data.base import parse_tasks
    from mtbench.launch import GridSpec, expand_grid, run_local
    from mtbench.leaderboard import to_markdown, write_leaderboard
    from mtbench.registry import DATASETS

    if args.list:
        return cmd_list(console)
    recipe = load_recipe(args.recipe, args.overrides)
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
                    data_dir=args.data_dir, backbone_weights=args.backbone_weights)
    runs = expand_grid(spec)
    # Pre-flight: a missing or malformed dataset fails once, here, with the expected layout, not once per run.
    from mtbench.engine import build_data

    build_data(runs[0], Path(args.results) / "cache")
    console.print(f"grid: {len(runs)} runs ({', '.join(sorted({r.method for r in runs}))}) on "
                  f"{spec.dataset} [{', '.join(tasks)}] with {spec.backbone}, recipe '{recipe['name']}', "
                  f"seeds {spec.seeds} → {args.results}", soft_wrap=True, markup=False)
    if args.executor == "slurm":
        from mtbench import slurm_launch

        outcome = slurm_launch.run_slurm(runs, Path(args.results), args, console)
        if args.no_wait:
            return 0
    else:
        from mtbench.launch import max_retries_from

        outcome = run_local(runs, Path(args.results), args.device, args.force, console, max_retries_from(args),
                            devices=args.devices)
    tables, path = write_leaderboard(Path(args.results))
    keys = {r.setting_key for r in runs}
    for t in tables:
        if t.slug.rsplit("_", 1)[-1] in keys:
            console.print(to_markdown(t), markup=False, highlight=False, soft_wrap=True)
    console.print(f"leaderboard written to {path}")
    failed = [k for k, v in outcome.items() if v.startswith("failed")]
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed:[/red] {', '.join(failed)}")
        return 1
    return 0


def cmd_leaderboard(args: argparse.Namespace, console: Console) -> int:
    from mtbench.leaderboard import to_markdown, write_leaderboard

    tables, path = write_leaderboard(Path(args.results_dir), Path(args.out) if args.out else None)
    for t in tables:
        console.print(to_markdown(t), markup=False, highlight=False, soft_wrap=True)
    if not tables:
        console.print("no finished runs found")
    console.print(f"leaderboard written to {path}")
    return 0
