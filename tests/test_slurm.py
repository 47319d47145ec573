"""Integration against a real SLURM cluster (``slurm/cluster.sh start``; .ci/run starts it): a synthetic grid
as one submitit job array, a preemption mid-training that resumes to the uninterrupted result, a re-submission
that skips everything, the leaderboard and status; a diverging run retried at most max_retries times.

Skipped where no cluster runs, unless MTBENCH_REQUIRE_SLURM=1 (CI), where that is a failure."""
import argparse
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from mtbench import engine
from mtbench.cli import status as status_cli
from mtbench.cli import main
from mtbench.config import RunConfig
from mtbench.records import read_record

ITERATIONS = 60  # long enough to be signalled mid-training, a few seconds on one core


def sh(*cmd: str, check: bool = True) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=check).stdout


def cluster_problem() -> str | None:
    if shutil.which("sbatch") is None:
        return "no sbatch on this machine"
    try:
        if "UP" not in sh("scontrol", "ping"):
            return "slurmctld does not answer"
        if not re.search(r"idle|mixed|alloc", sh("sinfo", "-h", "-o", "%T")):
            return "no node is up"
        sh("sacct", "-n", "-X", "-j", "1")  # accounting (slurmdbd): submitit and status need sacct
    except (subprocess.SubprocessError, OSError) as e:
        return f"{' '.join(getattr(e, 'cmd', []) or [])} failed: {getattr(e, 'stderr', '') or e}".strip()
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = cluster_problem()
    if problem:
        if os.environ.get("MTBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"SLURM cluster required here but not usable: {problem}")
        pytest.skip(f"SLURM cluster not running ({problem}): start it with slurm/cluster.sh start")


@pytest.fixture
def slurm_env(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # exported to the jobs (sbatch --export=ALL): same numerics
    monkeypatch.setenv("MTBENCH_SLURM_POLL_S", "0.5")
    monkeypatch.setenv("COLUMNS", "250")


def grid_argv(results: Path, overrides: list[str], *extra: str) -> list[str]:
    argv = ["--results", str(results), "--executor", "slurm", "--cluster", "local", *extra]
    for o in overrides:
        argv += ["--set", o]
    return argv


def jobs_of(results: Path) -> dict[str, list[dict]]:
    return {p.parent.name: json.loads(p.read_text())["jobs"] for p in (results / "runs").glob("*/slurm.json")}


def wait_until(what: str, predicate, timeout: float = 180.0, every: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def squeue_state(job_id: str) -> str:
    lines = [line.split("|") for line in sh("squeue", "-h", "-r", "--states=all", "-o", "%i|%T").splitlines()]
    return next((state for jid, state in lines if jid == job_id), "")


def test_grid_on_slurm_survives_preemption_and_is_not_resubmitted(cluster, slurm_env, tmp_path, tiny_overrides,
                                                                  capsys, monkeypatch):
    overrides = tiny_overrides + [f"iterations={ITERATIONS}", "checkpoint_every=1000"]  # no periodic checkpoints
    argv = grid_argv(tmp_path, overrides, "--methods", "baseline", "--tasks", "semseg,depth")
    assert main(argv + ["--no-wait"]) == 0
    jobs = jobs_of(tmp_path)
    assert len(jobs) == 3 and all(len(j) == 1 and j[0]["attempt"] == 1 for j in jobs.values())
    assert len({j[0]["job_id"].split("_")[0] for j in jobs.values()}) == 1, "one job array for the grid"

    def training_run():  # a run whose job is in the middle of training
        for run_id, (job,) in jobs.items():
            log = Path(job["stdout"]).read_text() if Path(job["stdout"]).exists() else ""
            if re.search(rf"\bit \d+/{ITERATIONS} ", log) and f"it {ITERATIONS}/" not in log:
                return run_id, job["job_id"]
        return None

    run_id, job_id = wait_until("a job to be training", training_run)
    # What SLURM sends before a time limit (and on preemption where configured), sent to the job's step 0
    # (submitit's srun): Slurm 22.05's `scancel --signal=USR2 <job>` on an array task can deliver the signal
    # and still answer "Job can not be altered now" while other tasks wait for resources, then resend it
    # and retry for ever.
    raw_id = sh("squeue", "-h", "-j", job_id, "-o", "%A").strip()  # the task's own job id
    sh("scancel", "--signal=USR2", f"{raw_id}.0")
    wait_until("the job to catch the signal", lambda: "signal SIGUSR2" in Path(jobs[run_id][0]["stdout"]).read_text(),
               timeout=30)
    wait_until(f"job {job_id} to be requeued", lambda: squeue_state(job_id) == "PENDING", timeout=60)
    sh("scontrol", "update", f"JobId={job_id}", "StartTime=now")  # skip Slurm's ~120 s hold on requeued jobs
    capsys.readouterr()
    assert main(argv) == 0  # the same command: submits nothing, waits for the queued jobs, writes the leaderboard
    out = capsys.readouterr().out
    assert "0 to submit" in out and "done" in out

    # the preempted run saved at the signal, resumed there and ended as an uninterrupted run does
    log = Path(jobs[run_id][0]["stdout"]).read_text()
    assert "checkpoint saved at iteration" in log and "requeueing (preemption" in log, log
    record = read_record(tmp_path / "runs" / run_id / "record.json")
    assert 0 < record["resumed_from"] < ITERATIONS and record["iterations"] == ITERATIONS
    assert record["slurm"] == {"job_id": job_id, "host": record["slurm"]["host"], "preemptions": 1}
    cfg = RunConfig.from_dict(record["config"])
    # the same intra-op threads as the job (the engine sets them from the CPU budget): other numerics otherwise
    threads = torch.get_num_threads()
    monkeypatch.setenv("MTBENCH_CPU_BUDGET", str(record["threads"]["torch_threads"]))
    try:
        reference = engine.run(cfg, tmp_path / "local" / "runs" / cfg.run_id, device=torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert reference["threads"]["torch_threads"] == record["threads"]["torch_threads"]
    assert reference["resumed_from"] == 0
    for task, metrics in reference["metrics"].items():
        assert record["metrics"][task] == pytest.approx(metrics, rel=1e-5, abs=1e-6), task

    # re-running the same command submits nothing and rewrites no record
    records = sorted((tmp_path / "runs").glob("*/record.json"))
    mtimes = [p.stat().st_mtime_ns for p in records]
    folders = sorted(p.name for p in (tmp_path / "slurm").iterdir())
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "0 to submit, 3 done already" in out and "submitted job array" not in out
    assert [p.stat().st_mtime_ns for p in records] == mtimes and jobs_of(tmp_path).keys() == jobs.keys()
    assert all(len(j) == 1 for j in jobs_of(tmp_path).values())
    assert sorted(p.name for p in (tmp_path / "slurm").iterdir()) == folders

    board = (tmp_path / "leaderboards" / "leaderboard.md").read_text()
    assert "| **baseline** |" in board and "| **single-task refs** |" in board
    assert status_cli.run(argparse.Namespace(results_dir=str(tmp_path), lines=10, no_leaderboard=False)) == 0
    out = capsys.readouterr().out
    assert "3 runs — 3 done" in out and "1 preemption" in out and f"{job_id} COMPLETED" in out


def test_failed_run_on_slurm_is_retried_at_most_max_retries_times(cluster, slurm_env, tmp_path, tiny_overrides,
                                                                 monkeypatch, capsys):
    monkeypatch.setenv("MTBENCH_MAX_RETRIES", "1")  # wins over local.yaml's max_retries: 2
    argv = grid_argv(tmp_path, tiny_overrides + ["optimizer.lr=1e20"], "--methods", "single", "--tasks", "depth")
    assert main(argv) == 1  # attempt 1 diverges: recorded failed with its error and SLURM job
    (run_id, jobs), = jobs_of(tmp_path).items()
    record = read_record(tmp_path / "runs" / run_id / "record.json")
    assert record["status"] == "failed" and record["error"].startswith("NonFiniteLoss") and record["attempt"] == 1
    assert record["slurm"]["job_id"] == jobs[0]["job_id"]
    assert "NonFiniteLoss" in Path(jobs[0]["stderr"]).read_text()

    # attempt 2: resubmitted held, then cancelled before it can write a record -> still counted, and reported
    assert main(argv + ["--no-wait", "--sbatch=--hold"]) == 0
    job2 = jobs_of(tmp_path)[run_id][-1]
    assert job2["attempt"] == 2 and squeue_state(job2["job_id"]) == "PENDING"
    sh("scancel", job2["job_id"])
    wait_until("the cancelled job to end", lambda: squeue_state(job2["job_id"]) in ("", "CANCELLED"), timeout=60)
    rows, _ = status_cli.collect(tmp_path)
    assert rows[0].state == "failed" and rows[0].job.startswith(job2["job_id"])
    capsys.readouterr()
    assert main(argv) == 1  # attempt 3 would exceed max_retries 1: nothing is submitted
    out = capsys.readouterr().out.replace("\n", " ")
    assert "0 to submit" in out and "gave up after 2 attempts" in out and "CANCELLED" in out
    assert len(jobs_of(tmp_path)[run_id]) == 2
    record = read_record(tmp_path / "runs" / run_id / "record.json")
    assert record["attempt"] == 2 and "CANCELLED" in record["error"]
    board = (tmp_path / "leaderboards" / "leaderboard.md").read_text()
    assert run_id in board or "No finished runs" in board


def test_two_process_run_on_slurm_writes_one_record_and_survives_a_requeue(cluster, slurm_env, tmp_path,
                                                                          tiny_overrides, capsys):
    """Data parallel under SLURM: 2 tasks on the node (gloo on CPU), one per device; rank 0 writes the
    record; a preemption signal seen by the ranks is agreed on, all save at the same step, it resumes."""
    overrides = tiny_overrides + [f"iterations={ITERATIONS}", "checkpoint_every=1000"]
    argv = grid_argv(tmp_path, overrides, "--methods", "single", "--tasks", "semseg", "--devices", "2",
                     "--cpus-per-task", "1")
    assert main(argv + ["--no-wait"]) == 0
    ((run_id, (job,)),) = jobs_of(tmp_path).items()
    stdout = Path(job["stdout"])

    def mid_training():
        log = stdout.read_text() if stdout.exists() else ""
        return re.search(rf"\bit \d+/{ITERATIONS} ", log) and f"it {ITERATIONS}/" not in log

    wait_until("the 2-process job to be training", mid_training)
    assert "rank 0 of 2" in stdout.read_text()
    raw_id = sh("squeue", "-h", "-j", job["job_id"], "-o", "%A").strip()
    sh("scancel", "--signal=USR2", f"{raw_id}.0")  # both tasks of the step get it
    wait_until("the job to be requeued", lambda: squeue_state(job["job_id"]) == "PENDING", timeout=90)
    sh("scontrol", "update", f"JobId={job['job_id']}", "StartTime=now")
    capsys.readouterr()
    assert main(argv) == 0
    assert "checkpoint saved at iteration" in stdout.read_text()
    records = list((tmp_path / "runs").glob("*/record.json"))
    assert len(records) == 1
    record = read_record(records[0])
    assert record["status"] == "done" and record["distributed"]["world_size"] == 2
    assert record["distributed"]["per_device_batch"] * 2 == record["distributed"]["global_batch"]
    assert 0 < record["resumed_from"] < ITERATIONS and record["slurm"]["preemptions"] == 1
