"""The SLURM executor: one submitit job array per grid; each run a :class:`RunJob` that
checkpoints and requeues itself on SLURM's preemption / time-limit signal.

Shared per-run bookkeeping (attempts, the retry policy, ``slurm.json``) lives in ``runstate``.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from submitit.helpers import Checkpointable, DelayedSubmission

from mtbench.atomic import clean_stale_temps, mb
from mtbench.config import RunConfig
from mtbench.records import RECORD_NAME, finished, runs_dir, write_record
from mtbench.runstate import (ACTIVE_STATES, CONFIG_FILE, DEFAULT_MAX_RETRIES, SLURM_FILE, RUNNING_STATES, RunLock,
                              decide, describe_holder, failure, max_retries_from, now, read_json, reconcile,
                              start_fresh, summary, write_json)
from mtbench.signals import DeferredSignals
from mtbench.slurm_query import query_slurm, tracked_states

CLUSTER_DIR = Path(__file__).resolve().parent.parent / "slurm"


# --- SLURM: the job -----------------------------------------------------------------------------------------

def _log(msg: str) -> None:
    print(f"[mtbench {datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


class RunJob(Checkpointable):
    """One run as a submitit job; requeues itself on SLURM's preemption / time-limit signal.

    submitit binds its signal (USR2 unless $SUBMITIT_PREEMPT_SIGNAL says otherwise; sbatch gets
    ``--signal=USR2@<signal_delay_s>``) to a handler that calls ``checkpoint()``, pickles the returned
    DelayedSubmission, runs ``scontrol requeue`` and exits. Called from inside a training step that would save a
    half-updated model, so during training the signal is deferred (``mtbench.signals``): the checkpoint is saved
    after the current step and only then is submitit's handler called. The requeued job resumes from that
    checkpoint (exact: weights, optimizer, schedule, data order and RNG). If a step does not end within
    ``grace_s`` seconds the handler runs anyway and the run resumes from its last periodic checkpoint. Outside
    training (setup, final evaluation) the signal is handed over at once; the end of training is always
    checkpointed.
    """

    _world, _rank = 1, 0  # set per process in _init_distributed

    def __init__(self, cfg: dict[str, Any], results_dir: str, device: str = "auto", attempt: int = 1,
                 grace_s: float = 60.0, keep_checkpoints: bool = False):
        self.cfg, self.results_dir, self.device, self.attempt, self.grace_s = cfg, results_dir, device, attempt, grace_s
        self.keep_checkpoints = keep_checkpoints
        self.preemptions = 0

    def __getstate__(self) -> dict[str, Any]:  # the runtime state (handlers, save callback) is not pickled
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"keep_checkpoints": False, **state})  # jobs pickled before the option existed

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        self.preemptions += 1
        _log(f"{self.cfg['run_id']}: requeueing (preemption/time limit #{self.preemptions})")
        return DelayedSubmission(self, *args, **kwargs)

    def __call__(self) -> str:
        from rich.progress import Progress

        from mtbench import checkpoint, engine

        cfg = RunConfig.from_dict(self.cfg)
        run_dir = runs_dir(Path(self.results_dir)) / cfg.run_id
        job_id = os.environ.get("SLURM_ARRAY_JOB_ID") and \
            f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}" or os.environ.get("SLURM_JOB_ID")
        slurm = {"job_id": job_id, "host": socket.gethostname(), "preemptions": self.preemptions}
        if finished(run_dir):
            _log(f"{cfg.run_id}: already has a finished record; nothing to do")
            return "done"
        if "OMP_NUM_THREADS" not in os.environ and os.environ.get("SLURM_CPUS_PER_TASK"):
            import torch

            torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
        self._guard = self._signals(int(cfg.recipe["iterations"]))
        with self._guard:
            device, self._rank = self._init_distributed()
            self._guard.world, self._guard.flag_device = self._world, getattr(self, "_flag_device", None)
            _log(f"{cfg.run_id}: attempt {self.attempt}, SLURM job {job_id} on {slurm['host']}, rank {self._rank} of "
                 f"{self._world}, {self.preemptions} preemption(s) so far")
            lock = RunLock(run_dir)
            if self._rank == 0 and not lock.acquire(job_id=job_id):
                _log(f"{cfg.run_id}: being trained by {describe_holder(lock.holder())}; this job leaves it alone")
                return "skipped"
            try:
                if self._rank == 0:
                    n, size = clean_stale_temps(run_dir, everything=True)
                    if n:
                        _log(f"{cfg.run_id}: removed {n} temp file(s) ({mb(size)}) left by an interrupted write")
                record = engine.run(cfg, run_dir, device=device, progress=Progress(disable=True),
                                    on_iteration=self._on_iteration)
                if self._rank == 0:  # one record per run, whatever the number of processes
                    write_record(run_dir, {**record, "attempt": self.attempt, "slurm": slurm})
                    freed = 0 if self.keep_checkpoints else checkpoint.prune(run_dir / "checkpoints")
                    _log(f"{cfg.run_id}: done (resumed from iteration {record['resumed_from']}): {summary(record)}"
                         + (f"; kept the final weights, freed {mb(freed)} of training state" if freed else ""))
            except Exception as e:
                if self._rank == 0:
                    write_record(run_dir, failure(cfg, run_dir, e, traceback.format_exc(), attempt=self.attempt,
                                                  slurm=slurm))
                _log(f"{cfg.run_id}: failed on rank {self._rank}: {type(e).__name__}: {e}")
                raise
            finally:
                lock.release()
                if self._world > 1:
                    import torch.distributed as dist

                    dist.destroy_process_group()
        return "done"

    def _init_distributed(self):
        """One process per SLURM task (= per GPU): submitit's environment gives rank, world size and the
        master address; NCCL on GPUs, gloo on CPUs."""
        import torch
        import torch.distributed as dist
        from submitit import JobEnvironment
        from submitit.helpers import TorchDistributedEnvironment

        from mtbench import engine

        try:
            self._world = JobEnvironment().num_tasks
        except RuntimeError:  # called outside a submitit job (tests, debugging): one process
            self._world = 1
        if self._world == 1:
            return engine.pick_device(self.device), 0
        env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        use_cuda = self.device != "cpu" and torch.cuda.is_available()
        device = torch.device("cuda", env.local_rank) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        self._flag_device = device
        return device, env.rank

    @staticmethod
    def signal_number() -> int:
        """The signal submitit requeues on: SIGUSR2 unless $SUBMITIT_PREEMPT_SIGNAL names another."""
        from submitit import JobEnvironment

        return JobEnvironment._usr_sig()

    def _signals(self, total: int) -> DeferredSignals:
        """submitit's handler, deferred to the end of the step; nothing to defer outside a submitit job."""
        sig = self.signal_number()
        handler = signal.getsignal(sig)
        if not callable(handler):
            return DeferredSignals((), lambda *a: None, total, log=_log)
        return DeferredSignals((sig,), lambda signum, frame, saved_at: handler(signum, frame), total,
                               grace_s=self.grace_s, log=lambda m: _log(f"{self.cfg['run_id']}: {m}"))

    def _on_iteration(self, it: int, save) -> None:
        self._guard.on_iteration(it, save)


# --- SLURM: submitting and waiting -------------------------------------------------------------------------

CLUSTER_KEYS = {
    "partition": "sbatch -p", "account": "sbatch -A", "qos": "sbatch --qos", "nodes": "nodes per run (1)",
    "gpus_per_node": "GPUs per run", "cpus_per_task": "CPU cores per run", "mem_gb": "memory per run in GB",
    "timeout_min": "time limit per job in minutes (default 240)", "constraint": "sbatch -C",
    "array_parallelism": "max array tasks running at once", "sbatch": "extra #SBATCH flags {name: value|true}",
    "srun_args": "extra srun arguments (list)", "setup": "shell lines run before the job (list)",
    "signal_delay_s": "seconds between the requeue signal and the time limit (default 90)",
    "max_num_timeout": "requeues after a time limit before giving up (default 20)",
    "max_retries": f"re-runs of a failed run (default {DEFAULT_MAX_RETRIES})", "python": "interpreter jobs run",
    "job_name": "SLURM job name (default mtbench)", "device": "device inside jobs (default auto)",
}


def load_cluster(name: str | None) -> dict[str, Any]:
    """``--cluster NAME`` -> slurm/NAME.yaml, or a path to a YAML file; keys in CLUSTER_KEYS."""
    if not name:
        return {}
    path = Path(name)
    if not path.is_file() and not path.suffix:
        path = CLUSTER_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CLUSTER_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"cluster config '{name}' not found (looked for {path}); known: {known}, "
                                f"or pass a path to a YAML file")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - set(CLUSTER_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; allowed: " +
                         ", ".join(f"{k} ({v})" for k, v in CLUSTER_KEYS.items()))
    return data


def parse_sbatch_flags(flags: list[str]) -> dict[str, Any]:
    """['--exclusive', '--mail-type=END'] -> {'exclusive': True, 'mail-type': 'END'}."""
    out: dict[str, Any] = {}
    for flag in flags or []:
        if not flag.startswith("--") or len(flag) < 3:
            raise ValueError(f"--sbatch {flag!r}: give the long form, e.g. --sbatch=--constraint=a100 "
                             f"or --sbatch=--exclusive")
        key, eq, value = flag[2:].partition("=")
        out[key] = value if eq else True
    return out


def executor_parameters(args: Any, cluster: dict[str, Any]) -> dict[str, Any]:
    """submitit AutoExecutor parameters: command-line flags first, then the cluster YAML, then defaults."""
    def pick(attr: str, key: str | None = None, default: Any = None) -> Any:
        value = getattr(args, attr, None)
        return value if value is not None else cluster.get(key or attr, default)

    # Data parallel: one task per device (GPU); --devices is per node, --nodes multiplies it.
    nodes, per_node = int(pick("nodes", default=1)), int(getattr(args, "devices", 1) or 1)
    gpus = pick("gpus_per_node")
    if gpus and int(gpus) != per_node and per_node > 1:
        raise ValueError(f"--devices {per_node} (processes per node) and --gpus-per-node {gpus} disagree: each "
                         f"process drives one GPU, give the same number")
    params = {
        "name": cluster.get("job_name", "mtbench"), "timeout_min": int(pick("time_min", "timeout_min", 240)),
        "nodes": nodes, "tasks_per_node": per_node, "gpus_per_node": gpus or None,
        "cpus_per_task": pick("cpus_per_task"), "mem_gb": pick("mem_gb"),
        "slurm_partition": pick("partition"), "slurm_account": pick("account"), "slurm_qos": pick("qos"),
        "slurm_constraint": pick("constraint"), "slurm_array_parallelism": pick("array_parallelism"),
        "slurm_signal_delay_s": cluster.get("signal_delay_s"), "slurm_srun_args": cluster.get("srun_args"),
        "slurm_setup": cluster.get("setup"),
    }
    extra = {**(cluster.get("sbatch") or {}), **parse_sbatch_flags(getattr(args, "sbatch_extra", []))}
    if extra:
        params["slurm_additional_parameters"] = extra
    return {k: v for k, v in params.items() if v is not None}


def outcome_of(run_dir: Path) -> str:
    record = read_json(Path(run_dir) / RECORD_NAME) or {}
    if record.get("status") == "done":
        return "done"
    return f"failed: {record.get('error', 'no record')}"


def run_slurm(runs: list[RunConfig], results_dir: Path, args: Any, console: Console | None = None
              ) -> dict[str, str]:
    """Submit the runs without a finished record (and not queued already) as ONE job array; wait unless
    --no-wait. Returns run id -> outcome; failures start with "failed"."""
    console = console or Console()
    results_dir = Path(results_dir).resolve()
    cluster = load_cluster(getattr(args, "cluster", None))
    params = executor_parameters(args, cluster)
    max_retries = max_retries_from(args, cluster)
    force = bool(getattr(args, "force", False))
    states = tracked_states(results_dir, [c.run_id for c in runs])  # {} when no run was ever submitted
    if states is None:  # the controller is down: only a grid with nothing left to do can go on
        open_runs = [c.run_id for c in runs if force or not finished(runs_dir(results_dir) / c.run_id)]
        if open_runs:
            raise RuntimeError(f"--executor slurm: squeue failed, so it is unknown which of the {len(open_runs)} "
                               f"unfinished run(s) are queued already; is slurmctld reachable (scontrol ping)? "
                               f"Re-run once it answers")
        console.print("squeue failed (is slurmctld reachable?), but every run of this grid is finished: "
                      "nothing to submit", style="yellow", markup=False, soft_wrap=True)
        states = {}
    outcome: dict[str, str] = {}
    waiting: dict[str, str] = {}
    to_submit: list[tuple[RunConfig, int]] = []
    for cfg in runs:
        run_dir = runs_dir(results_dir) / cfg.run_id
        reconcile(run_dir, states)
        d = decide(run_dir, states, force, max_retries)
        holder = RunLock(run_dir).holder() if d.action == "run" else None
        if holder is not None:
            outcome[cfg.run_id] = f"skipped (being trained by {describe_holder(holder)})"
            console.print(f"{cfg.run_id} is being trained by {describe_holder(holder)}: not submitted",
                          style="yellow", markup=False, soft_wrap=True)
            continue
        if d.action == "run":
            if force:
                removed = start_fresh(run_dir)
                console.print(f"--force: {cfg.run_id} starts from nothing" +
                              (f" (removed {', '.join(removed)})" if removed else ""), markup=False, soft_wrap=True)
            to_submit.append((cfg, d.attempt))
            continue
        outcome[cfg.run_id] = d.outcome
        if d.action == "skip-active":
            waiting[cfg.run_id] = d.job_id
        elif d.action == "give-up":
            console.print(f"{cfg.run_id} {d.outcome} (max_retries {max_retries}; --force retries it)", style="red",
                          markup=False, soft_wrap=True)
    n_done = sum(o == "skipped (done)" for o in outcome.values())
    console.print(f"[bold]slurm:[/bold] {len(to_submit)} to submit, {n_done} done already, {len(waiting)} queued or "
                  f"running already, {len(outcome) - n_done - len(waiting)} given up", soft_wrap=True)
    if to_submit:
        if shutil.which("sbatch") is None:
            raise RuntimeError("--executor slurm: no sbatch on this machine. Submit from a SLURM login node, start "
                               "the local test cluster (slurm/cluster.sh start) or use --executor local")
        jobs = submit(to_submit, results_dir, params, cluster, getattr(args, "device", "auto"),
                      bool(getattr(args, "keep_checkpoints", False)))
        for (cfg, attempt), job_id in zip(to_submit, jobs):
            waiting[cfg.run_id] = job_id
            outcome[cfg.run_id] = f"submitted (SLURM job {job_id}, attempt {attempt})"
        console.print(f"submitted job array {jobs[0].split('_')[0]} ({len(jobs)} runs) → logs in "
                      f"{results_dir / 'slurm'}; follow with: python bench.py status {results_dir}", markup=False,
                      soft_wrap=True)
    if getattr(args, "no_wait", False) or not waiting:
        return outcome
    outcome.update(wait(waiting, results_dir, console))
    return outcome


def submit(runs: list[tuple[RunConfig, int]], results_dir: Path, params: dict[str, Any], cluster: dict[str, Any],
           device: str, keep_checkpoints: bool = False) -> list[str]:
    """One array (or one job for a single run) through submitit; records every job in the run's slurm.json."""
    import submitit

    kwargs = {"slurm_max_num_timeout": int(cluster.get("max_num_timeout", 20))}
    if cluster.get("python"):
        kwargs["slurm_python"] = cluster["python"]
    executor = submitit.AutoExecutor(folder=results_dir / "slurm" / "%j", cluster="slurm", **kwargs)
    executor.update_parameters(**params)
    grace = max(10, int(params.get("slurm_signal_delay_s", 90)) - 30)
    device = device if device != "auto" else cluster.get("device", "auto")
    for cfg, _ in runs:
        write_json(runs_dir(results_dir) / cfg.run_id / CONFIG_FILE, cfg.to_dict())
    jobs = []
    with executor.batch():
        for cfg, attempt in runs:
            jobs.append(executor.submit(RunJob(cfg.to_dict(), str(results_dir), device, attempt, grace,
                                               keep_checkpoints)))
    for (cfg, attempt), job in zip(runs, jobs):
        run_dir = runs_dir(results_dir) / cfg.run_id
        entry = {"job_id": job.job_id, "attempt": attempt, "submitted_at": now(), "folder": str(job.paths.folder),
                 "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}
        data = read_json(run_dir / SLURM_FILE) or {"run_id": cfg.run_id, "jobs": []}
        data["jobs"].append(entry)
        write_json(run_dir / SLURM_FILE, data)
    return [job.job_id for job in jobs]


def wait(waiting: dict[str, str], results_dir: Path, console: Console) -> dict[str, str]:
    """Poll squeue/sacct until every job has ended; a rich progress bar shows the counts."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    fixed = os.environ.get("MTBENCH_SLURM_POLL_S")
    remaining, outcome, t0, failed = dict(waiting), {}, time.monotonic(), 0
    progress = Progress(TextColumn("[bold]SLURM"), BarColumn(), TextColumn("{task.completed}/{task.total} ended"),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console)
    try:
        with progress:
            bar = progress.add_task("slurm", total=len(remaining), status="")
            while remaining:
                states = query_slurm(list(remaining.values()))
                if states is None:
                    progress.update(bar, status="squeue failed; retrying")
                    states = {}
                for run_id, job_id in list(remaining.items()):
                    if job_id not in states or states[job_id].upper() in ACTIVE_STATES:
                        continue
                    run_dir = runs_dir(results_dir) / run_id
                    reconcile(run_dir, states)
                    outcome[run_id] = outcome_of(run_dir)
                    failed += outcome[run_id].startswith("failed")
                    colour = "green" if outcome[run_id] == "done" else "red"
                    console.print(f"{outcome[run_id]} {run_id} (SLURM job {job_id}, {states[job_id]})",
                                  style=colour, markup=False, soft_wrap=True)
                    del remaining[run_id]
                    progress.advance(bar)
                running = sum(states.get(j, "").upper() in RUNNING_STATES for j in remaining.values())
                progress.update(bar, status=f"{running} running · {len(remaining) - running} pending · "
                                            f"{failed} failed")
                if remaining:
                    time.sleep(float(fixed) if fixed else min(30.0, 2.0 + (time.monotonic() - t0) / 20))
    except KeyboardInterrupt:
        console.print(f"stopped waiting; the jobs go on in SLURM. Follow them with: python bench.py status "
                      f"{results_dir}", markup=False, soft_wrap=True)
        raise SystemExit(130)
    return outcome
