"""Grid expansion and executors. A grid is expanded once; each run has a stable id; finished
runs (a record with status done) are never redone."""
from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from mtbench.config import RunConfig
from mtbench.records import atomic_write_text, finished, runs_dir, write_record
from mtbench.registry import METHODS


@dataclass
class GridSpec:
    methods: list[str]
    dataset: str
    tasks: tuple[str, ...]
    backbone: str
    seeds: list[int]
    recipe: dict[str, Any]
    data_dir: str | None = None
    backbone_weights: str | None = None


def is_single_task(method: str) -> bool:
    return bool(getattr(METHODS.get(method), "single_task", False))


def reference_method() -> str:
    refs = [m for m in METHODS.names() if is_single_task(m)]
    if len(refs) != 1:
        raise RuntimeError(f"expected exactly one registered single-task reference method, found {refs}")
    return refs[0]


def expand_grid(spec: GridSpec) -> list[RunConfig]:
    """Runs for every (method, seed), plus the single-task references that Δm needs."""
    for m in spec.methods:
        METHODS.get(m)  # fail early, listing the known methods
    wanted = list(spec.methods)
    if any(not is_single_task(m) for m in wanted) and len(spec.tasks) > 1:
        ref = reference_method()
        if ref not in wanted:
            wanted.insert(0, ref)
    runs: dict[str, RunConfig] = {}
    for method in wanted:
        task_sets = [(t,) for t in spec.tasks] if is_single_task(method) else [spec.tasks]
        for seed in spec.seeds:
            for tasks in task_sets:
                cfg = RunConfig(method=method, dataset=spec.dataset, tasks=tasks, backbone=spec.backbone, seed=seed,
                                recipe=spec.recipe, data_dir=spec.data_dir, backbone_weights=spec.backbone_weights)
                runs.setdefault(cfg.run_id, cfg)
    return list(runs.values())


def summary(record: dict[str, Any]) -> str:
    """One line of primary metrics, for logs where progress bars don't render (SLURM, CI)."""
    parts = []
    for t, metric in record["primary_metrics"].items():
        value = record["metrics"][t].get(metric, record["metrics"][t].get("loss"))
        parts.append(f"{t} {metric if metric in record['metrics'][t] else 'loss'} {value:.4g}")
    return ", ".join(parts)


def run_local(runs: list[RunConfig], results_dir: Path, device_name: str = "auto", force: bool = False,
              console: Console | None = None) -> dict[str, str]:
    """In-process, sequential. A run that raises is recorded as failed and the grid goes on."""
    from mtbench import engine

    console = console or Console()
    device = engine.pick_device(device_name)
    outcome: dict[str, str] = {}
    progress = engine.make_progress()
    with progress:
        grid_bar = progress.add_task("grid", total=len(runs), status="")
        for cfg in runs:
            run_dir = runs_dir(results_dir) / cfg.run_id
            if finished(run_dir) and not force:
                outcome[cfg.run_id] = "skipped (done)"
                progress.advance(grid_bar)
                continue
            atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
            progress.update(grid_bar, status=cfg.run_id)
            try:
                record = engine.run(cfg, run_dir, device=device, progress=progress)
                write_record(run_dir, record)
                outcome[cfg.run_id] = "done"
                console.print(f"[green]done[/green] {cfg.run_id} in {record['train_time_s']:.0f}+"
                              f"{record['eval_time_s']:.0f} s: {summary(record)}", soft_wrap=True)
            except Exception as e:  # noqa: BLE001 — any failure is recorded, the grid goes on
                write_record(run_dir, {
                    "run_id": cfg.run_id, "status": "failed", "config": cfg.to_dict(),
                    "method": cfg.method, "dataset": cfg.dataset, "tasks": list(cfg.tasks),
                    "backbone": cfg.backbone, "seed": cfg.seed, "setting_key": cfg.setting_key,
                    "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
                    "finished_at": datetime.now(timezone.utc).isoformat(),
                })
                outcome[cfg.run_id] = f"failed: {type(e).__name__}: {e}"
                console.print(f"[red]run {cfg.run_id} failed:[/red] {type(e).__name__}: {e}")
            progress.advance(grid_bar)
    return outcome
