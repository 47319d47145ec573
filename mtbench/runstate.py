"""Per-run bookkeeping shared by every executor and by ``status``: the files beside a run's record
(``config.json``, ``slurm.json``, ``local.json``), attempts, and the retry policy. Below ``launch`` and
``slurm_launch`` so that neither imports the other.

Per run, ``runs/<id>/`` holds ``config.json``, ``record.json`` (done or failed, with the attempt number),
``slurm.json`` (every SLURM job submitted for it) and, while a process trains it, ``lock.json`` (its pid and
host; see :class:`RunLock`).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mtbench.atomic import current_umask
from mtbench.config import RunConfig
from mtbench.records import RECORD_NAME, atomic_write_text, failed_record, write_record

DEFAULT_MAX_RETRIES = 2
SLURM_FILE, LOCK_FILE, CONFIG_FILE = "slurm.json", "lock.json", "config.json"
# What --force removes so that a run starts from nothing (slurm.json stays: it is the history of attempts).
RUN_OUTPUTS = (RECORD_NAME, "checkpoints", "predictions", "qualitative", "train_log.jsonl", "train.log")
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
    """The JSON object in ``path``; None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


def start_fresh(run_dir: Path) -> list[str]:
    """--force: remove a run's record, checkpoints, predictions and logs so it trains from nothing; what was removed."""
    removed = []
    for name in RUN_OUTPUTS:
        path = Path(run_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def failure(cfg: RunConfig, run_dir: Path, error: BaseException | str, tb: str = "", attempt: int = 1,
            **extra: Any) -> dict[str, Any]:
    """The failed record of a run, naming its last good checkpoint (where a retry resumes)."""
    from mtbench.checkpoint import saved_iteration

    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    last = saved_iteration(Path(run_dir) / "checkpoints")
    if "last good checkpoint" not in text:
        text += f" (last good checkpoint: iteration {last})" if last is not None else " (no checkpoint yet)"
    return failed_record(cfg, text, tb, attempt=attempt, last_checkpoint=last, **extra)


# --- one process per run at a time ----------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def describe_holder(info: dict | None) -> str:
    if not info:
        return "another process"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}" + \
        (f" (since {info['started_at']})" if info.get("started_at") else "")


class RunLock:
    """An exclusive lock on a run directory while a process trains it: ``lock.json`` holds the pid and host (for
    people and for status) and is ``flock``-ed, so the lock of a dead process is free again whatever the file
    says; such a stale file is taken over (``took_over`` says whose it was). Where the filesystem has no flock,
    the pid is checked instead (on this host; a lock of another host is respected)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None
        self.took_over: dict | None = None

    def _flock(self, fd: int, mode: int) -> bool:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            info = read_json(self.path)  # no flock here: trust the pid of a process on this host
            return not info or (info.get("host") == socket.gethostname() and not _alive(int(info.get("pid", 0))))

    def acquire(self, **info: Any) -> bool:
        """Take the lock without waiting; False if a live process holds it (see ``holder``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
            if not self._flock(fd, fcntl.LOCK_EX):
                os.close(fd)
                return False
            try:  # the holder before us may have removed the file after we opened it: lock the file that is there
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        old = os.read(fd, 1 << 16)
        try:
            previous = json.loads(old) if old.strip() else None
        except ValueError:
            previous = None
        self.took_over = previous if isinstance(previous, dict) else None
        data = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started_at": now(), **info}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data + b"\n", 0)
        self.fd = fd
        return True

    def holder(self) -> dict | None:
        """Who holds the lock (pid, host, started_at), or None if it is free."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            if self._flock(fd, fcntl.LOCK_SH):
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            return read_json(self.path) or {}
        except OSError:
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: a waiter then locks a new file
        finally:
            os.close(self.fd)
            self.fd = None
