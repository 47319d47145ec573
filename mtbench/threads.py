"""CPU threads follow the allocation, not the machine.

A process's CPU budget is the smallest of: the CPUs its affinity mask allows (taskset, cgroups, SLURM's
binding), SLURM's ``--cpus-per-task`` and an ``OMP_NUM_THREADS`` the user set. Data-loader and evaluation
workers are processes drawn from the same budget, and ``--devices N`` on the CPU splits it between the N
processes, so nothing is oversubscribed: two 2-thread torch processes on 2 cores run several times slower
than one. Imports only ``os``, so that ``bench.py`` can fix the BLAS threads before numpy and torch load.
"""
from __future__ import annotations

import os

# Thread-count variables read once by the BLAS / OpenMP runtimes when they load.
BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
BUDGET_VAR = "MTBENCH_CPU_BUDGET"
_USER_OMP = os.environ.get("OMP_NUM_THREADS")  # as the user started us, before configure_environment


def _positive_int(value: str | None) -> int | None:
    try:
        n = int(value) if value is not None else None
    except ValueError:
        return None
    return n if n and n > 0 else None


def cpu_budget() -> int:
    """CPUs this process may use: affinity mask ∧ SLURM_CPUS_PER_TASK ∧ the user's OMP_NUM_THREADS ∧ the share
    a parent gave it (``MTBENCH_CPU_BUDGET``, set by :func:`child_environment`)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    for limit in (_positive_int(os.environ.get("SLURM_CPUS_PER_TASK")), _positive_int(_USER_OMP),
                  _positive_int(os.environ.get(BUDGET_VAR))):
        if limit:
            cpus = min(cpus, limit)
    return max(1, cpus)


def configure_environment() -> int:
    """Set the BLAS/OpenMP thread variables the user did not set to this process's budget (call before numpy
    and torch load: they read them once). Returns the budget."""
    budget = cpu_budget()
    for var in BLAS_VARS:
        os.environ.setdefault(var, str(budget))
    return budget


def split(budget: int, processes: int) -> int:
    """Each of ``processes`` local processes (``--devices N`` on the CPU) gets an equal share, at least 1."""
    return max(1, budget // max(1, processes))


def child_environment(processes: int) -> dict[str, str]:
    """Variables to set before starting ``processes`` local worker processes (spawned children read them when
    they start): each child's budget is its share, and its BLAS runtimes load with that many threads."""
    share = str(split(cpu_budget(), processes))
    return {BUDGET_VAR: share, **{var: share for var in BLAS_VARS}}


def compute_threads(budget: int, workers: int) -> int:
    """Intra-op threads of a training process whose data-loader ``workers`` (1 thread each) share its budget."""
    return max(1, budget - max(0, workers))


def plan(workers: int = 0) -> dict[str, int]:
    """What one training process uses: its budget, the torch threads left after its data-loader workers, and
    the worker processes an evaluator may start (the whole budget: it runs when the loader is idle)."""
    budget = cpu_budget()
    return {"cpu_budget": budget, "torch_threads": compute_threads(budget, workers), "dataloader_workers": workers,
            "eval_workers": budget}


def apply(workers: int = 0) -> dict[str, int]:
    """Set torch's intra-op threads for this process from :func:`plan`; the plan goes into the run record."""
    import torch

    p = plan(workers)
    torch.set_num_threads(p["torch_threads"])
    return p
