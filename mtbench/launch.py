"""Grid expansion and executors. A grid is expanded once; each run has a stable id; finished
runs (a record with status done) are never redone; a failed run is retried at most ``max_retries``
times by re-running the same command.

Executors: ``run_local`` here (in-process, sequential, or ``devices`` spawned processes per run; one process per
run at a time, by a lock in the run directory) and
``slurm_launch.run_slurm`` (one submitit job array per grid, each run a ``RunJob`` that checkpoints and requeues
itself on SLURM's preemption/time-limit signal). Their shared bookkeeping is in ``runstate``.
"""
from __future__ import annotations

import os
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from mtbench import checkpoint, threads
from mtbench.atomic import clean_stale_temps, mb
from mtbench.config import RunConfig
from mtbench.distributed import free_port
from mtbench.records import RECORD_NAME, read_record, runs_dir, write_record
from mtbench.registry import METHODS
from mtbench.runstate import (CONFIG_FILE, RunLock, decide, describe_holder, failure, max_retries_from, slurm_jobs,
                              start_fresh, summary, write_json)
from mtbench.signals import DeferredSignals, Interrupted
from mtbench.signals import name as signal_name
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
    weightings: tuple[str, ...] = ("fixed",)


def is_single_task(method: str) -> bool:
    return bool(getattr(METHODS.get(method), "single_task", False))


def reference_method() -> str:
    refs = [m for m in METHODS.names() if is_single_task(m)]
    if len(refs) != 1:
        raise RuntimeError(f"expected exactly one registered single-task reference method, found {refs}")
    return refs[0]


def method_backbone(method: str, default: str) -> str:
    """A method whose architecture fixes its network (``fixed_backbone``: mtan and segnet_split are SegNet) runs
    there whatever the grid's backbone is; every other method runs on the grid's."""
    return getattr(METHODS.get(method), "fixed_backbone", None) or default


def expand_grid(spec: GridSpec) -> list[RunConfig]:
    """Runs for every (method, weighting strategy, seed), plus the single-task references that Δm needs: on each
    backbone a multi-task method of the grid runs on, trained once (one task has nothing to weigh, so they do not
    depend on the strategy)."""
    from mtbench.weighting import check_strategy

    for m in spec.methods:
        METHODS.get(m)  # fail early, listing the known methods
    for w in spec.weightings:
        check_strategy(w, spec.recipe)  # the known list, the options, a missing solver: before any run
    wanted = list(spec.methods)
    multi = [m for m in wanted if not is_single_task(m)]
    ref_backbones = list(dict.fromkeys(method_backbone(m, spec.backbone) for m in multi))
    if multi and len(spec.tasks) > 1:
        ref = reference_method()
        if ref not in wanted:
            wanted.insert(0, ref)
    runs: dict[str, RunConfig] = {}
    for method in wanted:
        single = is_single_task(method) or len(spec.tasks) == 1
        task_sets = [(t,) for t in spec.tasks] if is_single_task(method) else [spec.tasks]
        if is_single_task(method):
            backbones = ([spec.backbone] if method in spec.methods else []) + ref_backbones
        else:
            backbones = [method_backbone(method, spec.backbone)]
        for backbone in dict.fromkeys(backbones):
            weights = spec.backbone_weights if backbone == spec.backbone else None  # SegNet trains from scratch
            for weighting in (("fixed",) if single else spec.weightings):
                for seed in spec.seeds:
                    for tasks in task_sets:
                        cfg = RunConfig(method=method, dataset=spec.dataset, tasks=tasks, backbone=backbone,
                                        seed=seed, recipe=spec.recipe, data_dir=spec.data_dir,
                                        backbone_weights=weights, weighting=weighting)
                        runs.setdefault(cfg.run_id, cfg)
    return list(runs.values())


# --- local executor ----------------------------------------------------------------------------------------

LOCAL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def run_local(runs: list[RunConfig], results_dir: Path, device_name: str = "auto", force: bool = False,
              console: Console | None = None, max_retries: int | None = None, devices: int = 1,
              keep_checkpoints: bool = False) -> dict[str, str]:
    """Sequential on this machine: in-process, or ``devices`` spawned processes per run (data parallel).
    A run that raises is recorded as failed and the grid goes on. A run another live process is training
    (its lock) is left for last and waited for. SIGINT / SIGTERM / SIGUSR1 save the current run at the end
    of its step and raise :class:`~mtbench.signals.Interrupted`."""
    local = LocalExecutor(results_dir, device_name, force, console or Console(),
                          max_retries_from() if max_retries is None else max_retries, devices, keep_checkpoints)
    tracked = [j["job_id"] for c in runs for j in slurm_jobs(runs_dir(results_dir) / c.run_id)[-1:]]
    local.states = (query_slurm(tracked) or {}) if tracked else {}  # runs queued in SLURM are not run here too
    outcome: dict[str, str] = {}
    with local.progress:
        grid_bar = local.progress.add_task("grid", total=len(runs), status="")
        locked = []
        for cfg in runs:
            result = local.attempt(cfg, grid_bar)
            if result is None:
                locked.append(cfg)
                continue
            outcome[cfg.run_id] = result
            local.progress.advance(grid_bar)
        for cfg in locked:
            local.wait_for_lock(cfg)
            outcome[cfg.run_id] = local.attempt(cfg, grid_bar) or "skipped (still being trained elsewhere)"
            local.progress.advance(grid_bar)
    return outcome


class LocalExecutor:
    """The steps of one local run: decide, lock, clean, train under deferred signals, record, prune."""

    def __init__(self, results_dir: Path, device_name: str, force: bool, console: Console, max_retries: int,
                 devices: int, keep_checkpoints: bool):
        from mtbench import engine

        self.results_dir, self.device_name, self.force, self.console = Path(results_dir), device_name, force, console
        self.max_retries, self.devices, self.keep_checkpoints = max_retries, devices, keep_checkpoints
        self.device = engine.pick_device(device_name)
        self.progress = engine.make_progress()
        self.states: dict[str, str] = {}

    def say(self, text: str, style: str | None = None) -> None:
        """Never rich markup: run ids, paths and error messages may hold '[' and ']'."""
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def attempt(self, cfg: RunConfig, grid_bar: int) -> str | None:
        """The run's outcome, or None when another live process holds its lock."""
        run_dir = runs_dir(self.results_dir) / cfg.run_id
        decision = decide(run_dir, self.states, self.force, self.max_retries)
        if decision.action == "run":
            lock = RunLock(run_dir)
            if not lock.acquire(attempt=decision.attempt):
                self.say(f"{cfg.run_id} is being trained by {describe_holder(lock.holder())}: left for the end of "
                         f"the grid, then waited for", "yellow")
                return None
            try:  # decided again under the lock: the other process may have just finished it
                decision = decide(run_dir, self.states, self.force, self.max_retries)
                if decision.action == "run":
                    return self._run(cfg, run_dir, decision.attempt, lock, grid_bar)
            finally:
                lock.release()
        if decision.action == "give-up":
            self.say(f"{cfg.run_id} {decision.outcome} (--force retries it)", "red")
        return decision.outcome

    def wait_for_lock(self, cfg: RunConfig, poll_s: float = 2.0) -> None:
        lock = RunLock(runs_dir(self.results_dir) / cfg.run_id)
        holder = lock.holder()
        if holder is not None:
            self.say(f"waiting for {describe_holder(holder)}, which is training {cfg.run_id} (Ctrl-C stops waiting; "
                     f"finished runs are kept)", "yellow")
        while lock.holder() is not None:
            time.sleep(poll_s)

    def _run(self, cfg: RunConfig, run_dir: Path, attempt: int, lock: RunLock, grid_bar: int) -> str:
        if lock.took_over:
            self.say(f"{cfg.run_id}: took over the lock left by {describe_holder(lock.took_over)}, which is no longer "
                     f"running")
        n, size = clean_stale_temps(run_dir, everything=True)  # nobody else writes here while we hold the lock
        if n:
            self.say(f"{cfg.run_id}: removed {n} temp file(s) ({mb(size)}) left by an interrupted write")
        if self.force:
            removed = start_fresh(run_dir)
            self.say(f"--force: {cfg.run_id} starts from nothing" + (f" (removed {', '.join(removed)})" if removed
                                                                       else ""))
        self.progress.update(grid_bar, status=cfg.run_id)
        try:
            write_json(run_dir / CONFIG_FILE, cfg.to_dict())
            record = self._train(cfg, run_dir, attempt)
            if self.devices == 1:
                write_record(run_dir, {**record, "attempt": attempt})
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 — any failure is recorded, the grid goes on
            try:
                write_record(run_dir, failure(cfg, run_dir, e, traceback.format_exc(), attempt=attempt))
            except OSError as w:
                self.say(f"{cfg.run_id}: could not write its failed record either: {w}", "red")
            self.say(f"run {cfg.run_id} failed (attempt {attempt} of {1 + self.max_retries}): {type(e).__name__}: "
                     f"{e}", "red")
            return f"failed: {type(e).__name__}: {e}"
        freed = 0 if self.keep_checkpoints else checkpoint.prune(run_dir / "checkpoints")
        self.say(f"done {cfg.run_id} in {record['train_time_s']:.0f}+{record['eval_time_s']:.0f} s: {summary(record)}"
                 + (f" (kept the final weights, freed {mb(freed)} of training state)" if freed else ""), "green")
        return "done"

    def _train(self, cfg: RunConfig, run_dir: Path, attempt: int) -> dict[str, Any]:
        from mtbench import engine

        if self.devices > 1:
            return spawn_run(cfg, run_dir, self.devices, self.device_name, attempt)
        guard = DeferredSignals(LOCAL_SIGNALS, interrupt_handover(cfg, run_dir), int(cfg.recipe["iterations"]),
                                log=lambda m: self.say(f"{cfg.run_id}: {m}", "yellow"),
                                immediate_on_repeat=(signal.SIGINT,))
        with guard:
            return engine.run(cfg, run_dir, device=self.device, progress=self.progress,
                              on_iteration=guard.on_iteration)


def interrupt_handover(cfg: RunConfig, run_dir: Path):
    """What a local run does once a signal may act: raise Interrupted, saying what was saved."""
    total = int(cfg.recipe["iterations"])

    def handover(signum: int, frame: Any, saved_at: int | None) -> None:
        if saved_at is None:
            saved_at = checkpoint.saved_iteration(run_dir / "checkpoints")
            if saved_at is None:
                raise Interrupted(f"{signal_name(signum)}: stopped {cfg.run_id} before its first checkpoint; "
                                  f"re-running the same command starts it again", signum)
        what = "training is complete and saved" if saved_at >= total else "saved"
        raise Interrupted(f"{signal_name(signum)}: {cfg.run_id} {what} at iteration {saved_at}/{total} "
                          f"({run_dir / 'checkpoints'}); re-running the same command resumes it from there", signum)

    return handover


# --- data parallel on this machine: one spawned process per device ------------------------------------------

class RunInterrupted(RuntimeError):
    """Interrupted, as a worker process reports it (torch's spawn swallows KeyboardInterrupt in workers)."""


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
        device = torch.device("cpu")  # threads: engine.run applies this process's share (spawn_run's environment)
    dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    cfg = RunConfig.from_dict(cfg_dict)
    guard = DeferredSignals(LOCAL_SIGNALS, interrupt_handover(cfg, Path(run_dir)), int(cfg.recipe["iterations"]),
                            log=(print if rank == 0 else lambda m: None), world=world, flag_device=device)
    try:
        with guard:
            record = engine.run(cfg, Path(run_dir), device=device, on_iteration=guard.on_iteration)
        if rank == 0:
            write_record(Path(run_dir), {**record, "attempt": attempt})
    except Interrupted as e:
        raise RunInterrupted(str(e)) from None
    finally:
        dist.destroy_process_group()


def spawn_run(cfg, run_dir: Path, devices: int, device_name: str, attempt: int) -> dict[str, Any]:
    """One run as ``devices`` processes on this machine (gloo on CPU, NCCL on GPUs); rank 0 writes the
    record, which is returned. A worker's exception is raised here, after the others are stopped. A signal
    to this process is passed on to the workers, which save at the end of their step (Ctrl-C reaches them
    from the terminal already)."""
    import torch.multiprocessing as mp

    if device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available()):
        if torch.cuda.device_count() < devices:
            raise ValueError(f"--devices {devices} asked for, but only {torch.cuda.device_count()} CUDA devices are "
                             f"visible")
    # Each process gets its share of this one's CPU budget (read by its BLAS runtimes when they load, and by
    # threads.apply in engine.run): N processes never oversubscribe the cores.
    share = threads.child_environment(devices)
    saved = {k: os.environ.get(k) for k in share}
    os.environ.update(share)
    try:
        ctx = mp.spawn(_worker, args=(cfg.to_dict(), str(run_dir), devices, free_port(), device_name, attempt),
                       nprocs=devices, join=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seen: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        seen.append(signum)
        if signum != signal.SIGINT:
            for p in ctx.processes:
                if p.is_alive():
                    os.kill(p.pid, signum)

    previous = {s: signal.signal(s, forward) for s in LOCAL_SIGNALS}
    try:
        while not ctx.join():
            pass
    except mp.ProcessRaisedException as e:
        if RunInterrupted.__name__ in str(e):
            message = str(e).rsplit(f"{RunInterrupted.__name__}: ", 1)[-1].strip()
            raise Interrupted(message, seen[0] if seen else signal.SIGINT) from None
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return read_record(Path(run_dir) / RECORD_NAME)
