"""Threads follow the allocation: affinity mask, SLURM's cpus-per-task, the user's OMP_NUM_THREADS, a parent's
share; loader workers come out of the same budget."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtbench import threads

ROOT = Path(__file__).resolve().parents[1]


def _budget_in_child(env_update: dict[str, str], prefix: list[str] | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in (*threads.BLAS_VARS, threads.BUDGET_VAR,
                                                            "SLURM_CPUS_PER_TASK")}
    env.update(env_update, PYTHONPATH=str(ROOT))
    code = ("from mtbench import threads; b = threads.configure_environment(); import os; "
            "print(b, os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'])")
    out = subprocess.run([*(prefix or []), sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout.strip()


def test_affinity_mask_limits_the_budget():
    if shutil.which("taskset") is None:
        pytest.skip("taskset (util-linux) not installed")
    assert _budget_in_child({}, ["taskset", "-c", "0"]) == "1 1 1"


@pytest.mark.parametrize("var", ["SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS", threads.BUDGET_VAR])
def test_allocation_variables_limit_the_budget(var):
    assert _budget_in_child({var: "1"}).split()[0] == "1"


def test_user_blas_setting_is_kept():
    budget, openblas, omp = _budget_in_child({"OPENBLAS_NUM_THREADS": "7"}).split()
    assert openblas == "7" and omp == budget  # ours fills only what the user left unset


def test_workers_and_processes_share_the_budget(monkeypatch):
    assert threads.compute_threads(4, 2) == 2 and threads.compute_threads(2, 4) == 1
    assert threads.split(5, 2) == 2 and threads.split(1, 4) == 1
    monkeypatch.setattr(threads, "cpu_budget", lambda: 8)
    env = threads.child_environment(4)
    assert env[threads.BUDGET_VAR] == "2" and all(env[v] == "2" for v in threads.BLAS_VARS)
    assert threads.plan(workers=3) == {"cpu_budget": 8, "torch_threads": 5, "dataloader_workers": 3,
                                       "eval_workers": 8}
