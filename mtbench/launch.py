"""Grid expansion and executors. A grid is expanded once; each run has a stable id; finished
runs (a record with status done) are never redone; a failed run is retried at most ``max_retries``
times by re-running the same command.

Executors: ``run_local`` here (in-process, sequential) and ``slurm_launch.run_slurm`` (one submitit
job array per grid, each run a ``RunJob`` that checkpoints and requeues itself on SLURM's
preemption/time-limit signal). Per run, ``runs/<id>/`` holds ``config.json``, ``record.json`` (done or failed, with the
attempt number), ``slurm.json`` (every SLURM job submitted for it) and, while a local run is
executing, ``local.json`` (its pid and host).
"""
from __future__ import annotations

import json
import os
import socket
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from mtbench.config import RunConfig
from mtbench.records import RECORD_NAME, atomic_write_text, failed_record, runs_dir, write_record
from mtbench.registry import METHODS

DEFAULT_MAX_RETRIES = 2
SLURM_FILE, LOCAL_FILE, CONFIG_FILE = "slurm.json", "local.json", "config.json"
# SLURM states in which a job may still run (or run again); anything else has ended.
RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING"}
ACTIVE_STATES = RUNNING_STATES | {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED",
                                  "PREEMPTED", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}


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


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- per-run files, attempts and the retry policy (both executors) ------------------------------------------

def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def slurm_jobs(run_dir: Path) -> list[dict[str, Any]]:
    return (read_json(Path(run_dir) / SLURM_FILE) or {}).get("jobs", [])


def attempts_made(record: dict | None, jobs: list[dict]) -> int:
    """Attempts so far: the failed record's attempt number, or the number of SLURM submissions."""
    from_record = int(record.get("attempt", 1)) if record and record.get("status") == "failed" else 0
    return max([from_record] + [int(j.get("attempt", 0)) for j in jobs])


def max_retries_from(args: Any = None, cluster: dict | None = None) -> int:
    """--max-retries if the CLI has it, else $MTBENCH_MAX_RETRIES, else the cluster YAML's, else 2."""
    for value in (getattr(args, "max_retries", None), os.environ.get("MTBENCH_MAX_RETRIES"),
                  (cluster or {}).get("max_retries")):
        if value is not None:
            return int(value)
    return DEFAULT_MAX_RETRIES


@dataclass
class Decision:
    action: str  # "skip-done" | "skip-active" | "give-up" | "run"
    attempt: int = 0  # the attempt number a "run" gets; attempts made for "give-up"
    job_id: str | None = None
    detail: str = ""

    @property
    def outcome(self) -> str:
        return {"skip-done": "skipped (done)",
                "skip-active": f"skipped (SLURM job {self.job_id} {self.detail.lower()})",
                "give-up": f"failed (gave up after {self.attempt} attempts): {self.detail}",
                }.get(self.action, f"attempt {self.attempt}")


def decide(run_dir: Path, states: dict[str, str], force: bool, max_retries: int) -> Decision:
    """What a (re-)run of the grid does with one run. ``states``: SLURM job id -> state."""
    record = read_json(Path(run_dir) / RECORD_NAME)
    jobs = slurm_jobs(run_dir)
    if jobs and states.get(jobs[-1]["job_id"], "").upper() in ACTIVE_STATES:
        return Decision("skip-active", job_id=jobs[-1]["job_id"], detail=states[jobs[-1]["job_id"]])
    done = bool(record and record.get("status") == "done")
    if done and not force:
        return Decision("skip-done")
    made = attempts_made(record, jobs)
    if not done and made > max_retries and not force:
        return Decision("give-up", attempt=made, detail=(record or {}).get("error", "no record"))
    return Decision("run", attempt=made + 1)


def reconcile(run_dir: Path, states: dict[str, str]) -> str | None:
    """A SLURM job that ended without writing a record (time limit, OOM kill, node failure, scancel) is a
    failed attempt: write its failed record. Returns the error, or None when there was nothing to do."""
    jobs = slurm_jobs(run_dir)
    cfg_dict = read_json(Path(run_dir) / CONFIG_FILE)
    if not jobs or cfg_dict is None:
        return None
    job, state = jobs[-1], states.get(jobs[-1]["job_id"], "UNKNOWN")
    record = read_json(Path(run_dir) / RECORD_NAME) or {}
    if state.upper() in ACTIVE_STATES or record.get("status") == "done" or \
            int(record.get("attempt", 0)) >= int(job["attempt"]):
        return None
    error = f"SLURM job {job['job_id']} ended {state} without writing a record (see {job.get('stderr', 'its log')})"
    write_record(run_dir, failed_record(RunConfig.from_dict(cfg_dict), error, attempt=int(job["attempt"]),
                                        slurm={"job_id": job["job_id"], "state": state}))
    return error


# --- local executor ----------------------------------------------------------------------------------------

def run_local(runs: list[RunConfig], results_dir: Path, device_name: str = "auto", force: bool = False,
              console: Console | None = None, max_retries: int | None = None, devices: int = 1) -> dict[str, str]:
    """Sequential on this machine: in-process, or ``devices`` spawned processes per run (data parallel).
    A run that raises is recorded as failed and the grid goes on."""
    from mtbench import engine
    from mtbench.distributed import spawn_run

    console = console or Console()
    max_retries = max_retries_from() if max_retries is None else max_retries
    device = engine.pick_device(device_name)
    tracked = [j["job_id"] for c in runs for j in slurm_jobs(runs_dir(results_dir) / c.run_id)[-1:]]
    from mtbench.slurm_launch import query_slurm

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
