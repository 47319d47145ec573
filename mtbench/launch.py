"""Grid expansion and executors. A grid is expanded once; each run has a stable id; finished
runs (a record with status done) are never redone; a failed run is retried at most ``max_retries``
times by re-running the same command.

Executors: ``run_local`` here (in-process, sequential, or ``devices`` spawned processes per run) and
``slurm_launch.run_slurm`` (one submitit job array per grid, each run a ``RunJob`` that checkpoints and requeues
itself on SLURM's preemption/time-limit signal). Their shared bookkeeping is in ``runstate``.
"""
from __future__ import annotations

import os
import socket
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from mtbench.config import RunConfig
from mtbench.distributed import free_port
from mtbench.records import RECORD_NAME, failed_record, read_record, runs_dir, write_record
from mtbench.registry import METHODS
from mtbench.runstate import CONFIG_FILE, LOCAL_FILE, decide, max_retries_from, now, slurm_jobs, summary, write_json
from mtbench.slurm_query import query_slurm


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


# --- local executor ----------------------------------------------------------------------------------------

def run_local(runs: list[RunConfig], results_dir: Path, device_name: str = "auto", force: bool = False,
              console: Console | None = None, max_retries: int | None = None, devices: int = 1) -> dict[str, str]:
    """Sequential on this machine: in-process, or ``devices`` spawned processes per run (data parallel).
    A run that raises is recorded as failed and the grid goes on."""
    from mtbench import engine

    console = console or Console()
    max_retries = max_retries_from() if max_retries is None else max_retries
    device = engine.pick_device(device_name)
    tracked = [j["job_id"] for c in runs for j in slurm_jobs(runs_dir(results_dir) / c.run_id)[-1:]]
    states = (query_slurm(tracked) or {}) if tracked else {}  # runs queued in SLURM are not run here too
    outcome: dict[str, str] = {}
    progress = engine.make_progress()
    with progress:
        grid_bar = progress.add_task("grid", total=len(runs), status="")
        for cfg in runs:
            run_dir = runs_dir(results_dir) / cfg.run_id
            decision = decide(run_dir, states, force, max_retries)
            if decision.action != "run":
                outcome[cfg.run_id] = decision.outcome
                if decision.action == "give-up":
                    console.print(f"[red]{cfg.run_id}[/red] {decision.outcome} (--force retries it)", soft_wrap=True)
                progress.advance(grid_bar)
                continue
            write_json(run_dir / CONFIG_FILE, cfg.to_dict())
            write_json(run_dir / LOCAL_FILE, {"pid": os.getpid(), "host": socket.gethostname(),
                                              "started_at": now(), "attempt": decision.attempt})
            progress.update(grid_bar, status=cfg.run_id)
            try:
                if devices > 1:
                    record = spawn_run(cfg, run_dir, devices, device_name, decision.attempt)
                else:
                    record = engine.run(cfg, run_dir, device=device, progress=progress)
                    write_record(run_dir, {**record, "attempt": decision.attempt})
                outcome[cfg.run_id] = "done"
                console.print(f"[green]done[/green] {cfg.run_id} in {record['train_time_s']:.0f}+"
                              f"{record['eval_time_s']:.0f} s: {summary(record)}", soft_wrap=True)
            except Exception as e:  # noqa: BLE001 — any failure is recorded, the grid goes on
                write_record(run_dir, failed_record(cfg, f"{type(e).__name__}: {e}", traceback.format_exc(),
                                                    attempt=decision.attempt))
                outcome[cfg.run_id] = f"failed: {type(e).__name__}: {e}"
                console.print(f"[red]run {cfg.run_id} failed[/red] (attempt {decision.attempt} of "
                              f"{1 + max_retries}): {type(e).__name__}: {e}", soft_wrap=True)
            finally:
                (run_dir / LOCAL_FILE).unlink(missing_ok=True)
            progress.advance(grid_bar)
    return outcome


# --- data parallel on this machine: one spawned process per device ------------------------------------------

def _worker(rank: int, cfg_dict: dict, run_dir: str, world: int, port: int, device_name: str, attempt: int) -> None:
    import torch.distributed as dist

    from mtbench import engine

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # don't oversubscribe the cores
    dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    try:
        record = engine.run(RunConfig.from_dict(cfg_dict), Path(run_dir), device=device)
        if rank == 0:
            write_record(Path(run_dir), {**record, "attempt": attempt})
    finally:
        dist.destroy_process_group()


def spawn_run(cfg, run_dir: Path, devices: int, device_name: str, attempt: int) -> dict[str, Any]:
    """One run as ``devices`` processes on this machine (gloo on CPU, NCCL on GPUs); rank 0 writes the
    record, which is returned. A worker's exception is raised here, after the others are stopped."""
    import torch.multiprocessing as mp

    if device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available()):
        if torch.cuda.device_count() < devices:
            raise ValueError(f"--devices {devices} asked for, but only {torch.cuda.device_count()} CUDA devices are "
                             f"visible")
    mp.spawn(_worker, args=(cfg.to_dict(), str(run_dir), devices, free_port(), device_name, attempt), nprocs=devices)
    return read_record(Path(run_dir) / RECORD_NAME)
