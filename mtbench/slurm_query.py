"""Job states from squeue/sacct. Read by the executors (a run queued in SLURM is not run again) and by
``status``; None where this machine has no SLURM client or the controller is down."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from mtbench.records import runs_dir
from mtbench.runstate import slurm_jobs


def _expand_ids(job_id: str) -> list[str]:
    """'12_[0-2,5%2]' -> ['12_0', '12_1', '12_2', '12_5']; plain ids unchanged."""
    if "_[" not in job_id:
        return [job_id]
    base, rest = job_id.split("_[", 1)
    out = []
    for part in rest.rstrip("]").split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        out += [f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def query_slurm(job_ids: list[str]) -> dict[str, str] | None:
    """SLURM job id (``12`` or ``12_3``) -> state: squeue for live jobs, sacct for ended ones; a job
    neither knows is UNKNOWN. None when this machine has no SLURM client or the controller is down."""
    if not job_ids:
        return {}
    if shutil.which("squeue") is None:
        return None
    listing = ["squeue", "-h", "-r", "--states=all", "-o", "%i|%T"]
    for cmd in (listing + ["-j", ",".join(sorted({j.split("_")[0] for j in job_ids}))], listing):
        try:  # by id (any user's jobs: a shared results dir); one id squeue has forgotten fails: list all
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
            break
        except subprocess.CalledProcessError:
            continue
        except (subprocess.SubprocessError, OSError):
            return None
    else:
        return None
    live = {}
    for line in out.splitlines():
        jid, _, state = line.strip().partition("|")
        for j in _expand_ids(jid):
            live[j] = state
    states = {j: live[j] for j in job_ids if j in live}
    missing = sorted({j.split("_")[0] for j in job_ids if j not in states})
    if missing and shutil.which("sacct"):
        try:
            out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(missing)],
                                 capture_output=True, text=True, timeout=60, check=True).stdout
            for line in out.splitlines():
                jid, _, state = line.strip().partition("|")
                for j in _expand_ids(jid):
                    if j in job_ids and j not in states:
                        states[j] = state.split()[0] if state else "UNKNOWN"
        except (subprocess.SubprocessError, OSError):
            pass
    return {j: states.get(j, "UNKNOWN") for j in job_ids}


def tracked_states(results_dir: Path, run_ids: list[str]) -> dict[str, str] | None:
    ids = [j["job_id"] for r in run_ids for j in slurm_jobs(runs_dir(results_dir) / r)[-1:]]
    return query_slurm(ids)
