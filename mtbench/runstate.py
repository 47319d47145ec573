"""Per-run bookkeeping shared by every executor and by ``status``: the files beside a run's record
(``config.json``, ``slurm.json``, ``local.json``), attempts, and the retry policy. Below ``launch`` and
``slurm_launch`` so that neither imports the other.

Per run, ``runs/<id>/`` holds ``config.json``, ``record.json`` (done or failed, with the attempt number),
``slurm.json`` (every SLURM job submitted for it) and, while a local run is executing, ``local.json`` (its pid
and host).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mtbench.config import RunConfig
from mtbench.records import RECORD_NAME, atomic_write_text, failed_record, write_record

DEFAULT_MAX_RETRIES = 2
SLURM_FILE, LOCAL_FILE, CONFIG_FILE = "slurm.json", "local.json", "config.json"
# SLURM states in which a job may still run (or run again); anything else has ended.
RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING"}
ACTIVE_STATES = RUNNING_STATES | {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED",
                                  "PREEMPTED", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}


def summary(record: dict[str, Any]) -> str:
    """One line of primary metrics, for logs where progress bars don't render (SLURM, CI)."""
    parts = []
    for t, metric in record["primary_metrics"].items():
        value = record["metrics"][t].get(metric, record["metrics"][t].get("loss"))
        parts.append(f"{t} {metric if metric in record['metrics'][t] else 'loss'} {value:.4g}")
    return ", ".join(parts)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
