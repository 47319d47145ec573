"""``bench.py profile``: what each method costs, measured the same way for all, without training.

For every method the model is built with random weights at the dataset's input size (no data is read:
``static_info`` gives the channels and size), then: parameters split backbone / head, FLOPs and
multiply-adds of one eval forward at batch 1 (torch's counter; papers often call multiply-adds
"FLOPs", so both are stored under their own names), and images/s and peak memory of a train step
(forward, task losses on constant targets, backward, the recipe's optimizer) and of an eval forward
(measured first, so its peak holds no gradients) at ``--batch``. One JSON per method goes to
``<results>/profiles/`` for the leaderboard.
``--meta-only`` builds on the meta device and counts parameters only (Swin-L/ViT-L on a laptop).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

PROFILE_DIR = "profiles"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", default="baseline", help="comma-separated method names (default: baseline)")
    parser.add_argument("--dataset", default="synthetic", help="dataset whose input size and classes are used")
    parser.add_argument("--tasks", default=None,
                        help="task preset (nyud, pascal) or comma list; default: the dataset's")
    parser.add_argument("--backbone", default=None, help="backbone name (default: the recipe's)")
    parser.add_argument("--recipe", default=None,
                        help="recipe for method / dataset options and the optimizer (default: the dataset's own "
                             "recipe, as for a run: smoke for synthetic, nyud for nyud, pascal for pascal)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set methods.mqt.dead_modules=true")
    parser.add_argument("--batch", type=int, default=1, help="images per step for the timings (default: 1)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step (default: 5)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    parser.add_argument("--meta-only", action="store_true",
                        help="count parameters only, building on the meta device (no memory, no FLOPs, no timings)")
    parser.add_argument("--results", default="results", help="results directory (default: results)")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _targets(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Constant, valid targets shaped for each task's loss (labels 0, depth 1, normals +z, edges 0)."""
    t = {}
    for name, logits in out.items():
        b, c, h, w = logits.shape
        if name == "normals":
            t[name] = torch.zeros(b, 3, h, w, device=logits.device)
            t[name][:, 2] = 1.0
        elif name in ("semseg", "human_parts", "sal"):
            t[name] = torch.zeros(b, h, w, dtype=torch.long, device=logits.device)
        else:
            t[name] = torch.full((b, h, w), float(name == "depth"), device=logits.device)
    return t


def _timed(fn, steps: int, batch: int, device: torch.device) -> dict[str, Any]:
    from mtbench.profiling import peak_memory_mb, reset_peak_memory

    fn()  # warm-up: allocator, cudnn autotune, lazy init
    _sync(device)
    reset_peak_memory(device)  # CUDA allocator peak, or the process's peak RSS (Linux), from here on
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    dt = (time.perf_counter() - t0) / steps
    return {"s_per_step": dt, "images_per_s": batch / dt, "peak_memory": peak_memory_mb(device)}


def profile_method(method: str, args: argparse.Namespace, recipe: dict, tasks: tuple[str, ...], info,
                   backbone_name: str, device: torch.device) -> dict[str, Any]:
    from mtbench.evaluation import autocast
    from mtbench.objective import task_losses
    from mtbench.optim import build_optimizer
    from mtbench.profiling import count_flops, param_counts
    from mtbench.registry import BACKBONES, METHODS, TASKS

    task_objs = {t: TASKS.get(t) for t in tasks}
    channels = {t: task.out_channels(info) for t, task in task_objs.items()}
    method_cfg = dict(recipe["methods"].get(method, {}))
    size = tuple(info.image_size)
    build_device = torch.device("meta") if args.meta_only else device
    with build_device:  # build directly on the device: no CPU copy of a huge model
        model = METHODS.get(method)(channels, BACKBONES.get(backbone_name)(img_size=size, **recipe["backbone_cfg"]), method_cfg)
    if not args.meta_only:
        model.to(device)  # anything a builder made with an explicit CPU device
    entry: dict[str, Any] = {
        "kind": "profile", "method": method, "method_cfg": method_cfg, "dataset": info.name, "tasks": list(tasks),
        "task_channels": channels, "backbone": backbone_name, "image_size": list(size), "batch": args.batch,
        "meta_only": bool(args.meta_only), "params": param_counts(model),
    }
    if args.meta_only:
        return entry
    entry["flops"] = count_flops(model, size, device)
    from mtbench.weighting import resolved_loss_weights

    weights = resolved_loss_weights(recipe, list(task_objs), info.loss_weight_profile)  # the engine's rule
    x = torch.randn(args.batch, 3, *size, device=device)
    optimizer = build_optimizer(model, recipe["optimizer"])
    use_amp = bool(recipe["amp"]) and device.type == "cuda"  # the engine's rule
    entry["precision"] = "bf16-autocast" if use_amp else "fp32"

    def train_step():
        with autocast(device, use_amp):
            out = model(x)
        targets = _targets(out["final"])
        loss = sum(task_losses(out, targets, task_objs, weights, getattr(model, "aux_losses", None)).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def eval_step():
        with autocast(device, use_amp):
            model(x)

    # eval first: its peak then holds no gradients or optimizer state
    for phase, fn, train in (("eval", eval_step, False), ("train", train_step, True)):
        model.train(train)
        try:
            entry[phase] = _timed(fn, args.steps, args.batch, device)
        except torch.OutOfMemoryError:
            entry[phase] = {"error": "out of memory"}
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
    return entry


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _table(entries: list[dict[str, Any]], device: torch.device) -> Table:
    e0 = entries[0]
    (h, w), where = e0["image_size"], "meta device" if e0["meta_only"] else device
    tab = Table(title=f"cost per method ({e0['dataset']}, {e0['backbone']}, {h}×{w}, batch {e0['batch']}, {where})")
    tab.caption = "params in millions; img/s at the batch above; peak memory in MB"
    for col in ("method", "params", "backbone", "head", "GFLOPs", "GMACs", "train img/s", "train MB",
                "eval img/s", "eval MB"):
        tab.add_column(col, justify="left" if col == "method" else "right", no_wrap=True)
    for e in entries:
        p, f = e["params"], e.get("flops", {})
        row = [e["method"], f"{p['total'] / 1e6:.2f}", f"{p['backbone'] / 1e6:.2f}", f"{p['head'] / 1e6:.2f}",
               _fmt(f.get("gflops"), ".1f"), _fmt(f.get("gmacs"), ".1f")]
        for phase in ("train", "eval"):
            r = e.get(phase, {})
            row += [r.get("error") or _fmt(r.get("images_per_s"), ".2f"),
                    _fmt(r.get("peak_memory", {}).get("mb"), ".0f")]
        tab.add_row(*row)
    return tab


def profile_path(results: Path, e: dict[str, Any], device: torch.device) -> Path:
    h, w = e["image_size"]
    where = "meta" if e["meta_only"] else device.type
    name = f"{e['method']}_{e['dataset']}_{'-'.join(e['tasks'])}_{e['backbone']}_{h}x{w}_b{e['batch']}_{where}.json"
    return Path(results) / PROFILE_DIR / name


def run(args: argparse.Namespace) -> int:
    from mtbench.config import default_recipe, load_recipe
    from mtbench.data.base import parse_tasks
    from mtbench.engine import pick_device
    from mtbench.profiling import environment
    from mtbench.records import atomic_write_text
    from mtbench.registry import BACKBONES, DATASETS, METHODS, TASKS

    console = Console(width=None if sys.stdout.isatty() else 160)  # logs: don't squeeze the table to 80
    if args.batch < 1 or args.steps < 1:
        raise ValueError("--batch and --steps must be positive integers")
    recipe = load_recipe(args.recipe or default_recipe(args.dataset), args.overrides)  # the rule `bench.py` uses
    builder = DATASETS.get(args.dataset)
    if not hasattr(builder, "static_info"):
        raise ValueError(f"dataset '{args.dataset}' has no static_info(tasks, cfg); it cannot be profiled without data")
    tasks = parse_tasks(args.tasks, getattr(builder, "default_tasks", ("semseg", "depth", "normals", "edge")))
    info = builder.static_info(tasks, dict(recipe["datasets"].get(args.dataset, {})))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        METHODS.get(m)  # fail before building anything, listing the known methods
    device = pick_device(args.device)
    backbone = args.backbone or recipe["backbone"]
    BACKBONES.get(backbone)
    for t in tasks:
        TASKS.get(t)
    env = environment(device)
    entries = []
    for m in methods:
        console.print(f"profiling [bold]{m}[/bold] on {'the meta device' if args.meta_only else device} ...")
        e = profile_method(m, args, recipe, tasks, info, backbone, device)
        e.update(recipe=recipe["name"], environment=env, created_at=datetime.now(timezone.utc).isoformat())
        path = profile_path(Path(args.results), e, device)
        atomic_write_text(path, json.dumps(e, indent=2, sort_keys=True, default=str) + "\n")
        entries.append(e)
    console.print(_table(entries, device))
    if device.type == "cpu" and not args.meta_only:
        console.print("CPU peak memory: the process's peak RSS during the timed steps (it includes the "
                      "interpreter, torch and every model built so far in this process)")
    console.print(f"profiles written to {Path(args.results) / PROFILE_DIR}")
    return 0
