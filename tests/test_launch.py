"""Launch logic without a SLURM cluster: the retry policy, skip-if-done and skip-if-queued for both executors,
cluster configs -> sbatch flags, the preemption handshake of RunJob, and the status table."""
import argparse
import json
import os
import pickle
import signal
import socket

import cloudpickle
import pytest
import torch

from mtbench import engine, launch, runstate, slurm_launch, slurm_query
from mtbench.cli import status as status_cli
from mtbench.cli import main
from mtbench.config import RunConfig
from mtbench.runstate import Decision, decide, reconcile
from mtbench.slurm_launch import RunJob
from mtbench.records import read_record, write_record


def cfg_for(recipe, method="single", tasks=("depth",), seed=0):
    return RunConfig(method, "synthetic", tasks, "resnet18", seed, recipe)


def make_run(results, cfg, record=None, jobs=None):
    run_dir = results / "runs" / cfg.run_id
    runstate.write_json(run_dir / "config.json", cfg.to_dict())
    if record is not None:
        write_record(run_dir, {"run_id": cfg.run_id, "config": cfg.to_dict(), "setting_key": cfg.setting_key,
                               **record})
    if jobs is not None:
        runstate.write_json(run_dir / "slurm.json", {"run_id": cfg.run_id, "jobs": jobs})
    return run_dir


def slurm_args(results, **kw):
    base = dict(cluster=None, partition=None, account=None, qos=None, nodes=None, gpus_per_node=None,
                cpus_per_task=None, mem_gb=None, time_min=None, constraint=None, sbatch_extra=[],
                array_parallelism=None, no_wait=True, force=False, device="cpu", devices=1, results=str(results))
    return argparse.Namespace(**{**base, **kw})


# --- the retry policy --------------------------------------------------------------------------------------

@pytest.mark.parametrize("record, jobs, states, force, expect", [
    (None, None, {}, False, Decision("run", 1)),
    ({"status": "done"}, None, {}, False, Decision("skip-done")),
    ({"status": "done"}, None, {}, True, Decision("run", 1)),
    ({"status": "failed", "attempt": 1, "error": "NaN"}, None, {}, False, Decision("run", 2)),
    ({"status": "failed", "attempt": 3, "error": "NaN"}, None, {}, False, Decision("give-up", 3, detail="NaN")),
    ({"status": "failed", "attempt": 3, "error": "NaN"}, None, {}, True, Decision("run", 4)),
    # a queued job is never submitted twice, --force or not
    (None, [{"job_id": "7_1", "attempt": 1}], {"7_1": "PENDING"}, True, Decision("skip-active", 0, "7_1", "PENDING")),
    ({"status": "failed", "attempt": 1}, [{"job_id": "7_1", "attempt": 2}], {"7_1": "RUNNING"}, False,
     Decision("skip-active", 0, "7_1", "RUNNING")),
    # three SLURM jobs that all died without a record count as three attempts
    (None, [{"job_id": f"{i}", "attempt": i} for i in (1, 2, 3)], {"3": "TIMEOUT"}, False,
     Decision("give-up", 3, detail="no record")),
])
def test_decide(tmp_path, tiny_recipe, record, jobs, states, force, expect):
    run_dir = make_run(tmp_path, cfg_for(tiny_recipe), record, jobs)
    assert decide(run_dir, states, force, max_retries=2) == expect


def test_a_job_that_died_without_a_record_becomes_a_failed_record(tmp_path, tiny_recipe):
    cfg = cfg_for(tiny_recipe)
    run_dir = make_run(tmp_path, cfg, {"status": "failed", "attempt": 1, "error": "NaN"},
                       [{"job_id": "5_0", "attempt": 1}, {"job_id": "9_0", "attempt": 2, "stderr": "/x/9_0_0_log.err"}])
    assert reconcile(run_dir, {"9_0": "RUNNING"}) is None
    error = reconcile(run_dir, {"9_0": "TIMEOUT"})
    assert "9_0 ended TIMEOUT" in error and "/x/9_0_0_log.err" in error
    rec = read_record(run_dir / "record.json")
    assert rec["status"] == "failed" and rec["attempt"] == 2 and rec["method"] == "single"
    assert reconcile(run_dir, {"9_0": "TIMEOUT"}) is None  # idempotent


def test_local_failed_run_is_retried_at_most_max_retries_times(tmp_path, tiny_recipe, monkeypatch):
    bad, good = cfg_for(tiny_recipe, seed=0), cfg_for(tiny_recipe, seed=1)
    calls = []

    def fake_run(cfg, run_dir, device=None, progress=None, on_iteration=None):
        calls.append(cfg.seed)
        if cfg.seed == 0:
            raise engine.NonFiniteLoss("loss is nan at iteration 6")
        return {"run_id": cfg.run_id, "status": "done", "primary_metrics": {"depth": "rmse"},
                "metrics": {"depth": {"rmse": 1.0}}, "train_time_s": 0.0, "eval_time_s": 0.0}

    monkeypatch.setattr(engine, "run", fake_run)
    outcomes = [launch.run_local([bad, good], tmp_path, "cpu", max_retries=2) for _ in range(4)]
    assert calls == [0, 1, 0, 0]  # the good run ran once, the bad one 1 + 2 times, then no more
    assert [o[bad.run_id].split(":")[0] for o in outcomes] == ["failed"] * 3 + ["failed (gave up after 3 attempts)"]
    assert "loss is nan" in outcomes[-1][bad.run_id]
    assert all(o[good.run_id] == "skipped (done)" for o in outcomes[1:])
    rec = read_record(tmp_path / "runs" / bad.run_id / "record.json")
    assert rec["status"] == "failed" and rec["attempt"] == 3 and "NonFiniteLoss" in rec["traceback"]
    assert not (tmp_path / "runs" / bad.run_id / "lock.json").exists()
    launch.run_local([bad], tmp_path, "cpu", force=True, max_retries=2)  # --force retries all the same
    assert calls[-1] == 0 and read_record(tmp_path / "runs" / bad.run_id / "record.json")["attempt"] == 4


def test_cli_gives_up_on_a_diverging_run(tmp_path, tiny_overrides, monkeypatch, capsys):
    monkeypatch.setenv("MTBENCH_MAX_RETRIES", "0")
    argv = ["--methods", "single", "--tasks", "depth", "--results", str(tmp_path), "--set", "optimizer.lr=1e20"]
    for o in tiny_overrides:
        argv += ["--set", o]
    assert main(argv) == 1
    record = next((tmp_path / "runs").glob("*/record.json"))
    assert json.loads(record.read_text())["error"].startswith("NonFiniteLoss")
    mtime = record.stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 1  # not retried: leaves it failed and says so
    assert "gave up after 1 attempts" in capsys.readouterr().out.replace("\n", " ")
    assert record.stat().st_mtime_ns == mtime


# --- run_slurm without a cluster ---------------------------------------------------------------------------

def test_run_slurm_skips_finished_runs_without_needing_slurm(tmp_path, tiny_recipe, monkeypatch):
    monkeypatch.setattr(slurm_launch.shutil, "which", lambda name: None)  # as on a machine without SLURM
    runs = [cfg_for(tiny_recipe, seed=s) for s in (0, 1)]
    for cfg in runs:
        make_run(tmp_path, cfg, {"status": "done"})
    out = slurm_launch.run_slurm(runs, tmp_path, slurm_args(tmp_path, no_wait=False))
    assert out == {c.run_id: "skipped (done)" for c in runs}
    assert not (tmp_path / "slurm").exists()
    missing = cfg_for(tiny_recipe, seed=2)
    with pytest.raises(RuntimeError, match="no sbatch"):
        slurm_launch.run_slurm(runs + [missing], tmp_path, slurm_args(tmp_path))


def test_run_slurm_does_not_resubmit_a_queued_run(tmp_path, tiny_recipe, monkeypatch):
    monkeypatch.setattr(slurm_launch.shutil, "which", lambda name: None)  # submitting would raise
    cfg = cfg_for(tiny_recipe)
    make_run(tmp_path, cfg, None, [{"job_id": "7_0", "attempt": 1}])
    monkeypatch.setattr(slurm_query, "query_slurm", lambda ids: {i: "PENDING" for i in ids})
    out = slurm_launch.run_slurm([cfg], tmp_path, slurm_args(tmp_path, force=True))
    assert out == {cfg.run_id: "skipped (SLURM job 7_0 pending)"}


def test_query_slurm_reads_squeue_then_sacct(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\necho '12_[3-4%2]|PENDING'\necho '12_1|RUNNING'\n")
    (bin_dir / "sacct").write_text("#!/bin/sh\necho '12_0|COMPLETED'\necho '9|CANCELLED by 0'\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert slurm_query.query_slurm(["12_0", "12_1", "12_4", "9", "8"]) == {
        "12_0": "COMPLETED", "12_1": "RUNNING", "12_4": "PENDING", "9": "CANCELLED", "8": "UNKNOWN"}
    assert slurm_query.query_slurm([]) == {}
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert slurm_query.query_slurm(["1"]) is None  # no SLURM here


# --- cluster configs -> submitit -> sbatch -----------------------------------------------------------------

def test_cluster_yaml_and_flags_become_sbatch_lines(tmp_path):
    import submitit

    cluster = slurm_launch.load_cluster("example_cluster")
    args = slurm_args(tmp_path, partition="big", time_min=60, sbatch_extra=["--exclusive", "--mail-type=END"])
    params = slurm_launch.executor_parameters(args, cluster)
    assert params["slurm_partition"] == "big" and params["timeout_min"] == 60  # the flag wins over the YAML
    assert params["slurm_account"] == cluster["account"] and params["gpus_per_node"] == cluster["gpus_per_node"]
    ex = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    ex.update_parameters(**params)
    text = ex._executor._make_submission_file_text("python -m x", "uid")
    for line in ["--partition=big", "--time=60", f"--account={cluster['account']}", "--exclusive", "--mail-type=END",
                 f"--constraint={cluster['constraint']}", "--signal=USR2@"]:
        assert line in text, line
    assert slurm_launch.load_cluster(None) == {} and slurm_launch.load_cluster("local")["partition"] == "debug"


@pytest.mark.parametrize("content, flags, needle", [
    ("partiton: gpu\n", [], "unknown keys ['partiton']"),
    ("", ["-C a100"], "long form"),
])
def test_bad_cluster_config_names_the_problem(tmp_path, content, flags, needle):
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ValueError) as e:
        slurm_launch.executor_parameters(slurm_args(tmp_path, sbatch_extra=flags), slurm_launch.load_cluster(str(path)))
    assert needle in str(e.value)
    with pytest.raises(FileNotFoundError, match="known: .*local"):
        slurm_launch.load_cluster("nope")


# --- preemption: RunJob defers submitit's signal to the end of the step, saves, requeues -----------------

class SignalAtIteration3(RunJob):
    def _on_iteration(self, it, save):
        if it == 3 and not self.preemptions:
            os.kill(os.getpid(), RunJob.signal_number())
        super()._on_iteration(it, save)


def test_preemption_saves_after_the_step_and_the_requeued_job_ends_identically(tmp_path, tiny_recipe):
    cfg = cfg_for(tiny_recipe, "baseline", ("semseg", "depth"))
    reference = engine.run(cfg, tmp_path / "ref" / "runs" / cfg.run_id, device=torch.device("cpu"))
    job = SignalAtIteration3(cfg.to_dict(), str(tmp_path / "slurm"), "cpu", attempt=1)
    requeued = []

    def submitit_handler(signum, frame):  # what submitit does on its signal: checkpoint(), dump, requeue, exit
        requeued.append(cloudpickle.dumps(job.checkpoint()))
        raise SystemExit(-1)

    sig = RunJob.signal_number()
    old = signal.signal(sig, submitit_handler), signal.getsignal(signal.SIGALRM)
    try:
        with pytest.raises(SystemExit):
            job()
        run_dir = tmp_path / "slurm" / "runs" / cfg.run_id
        # checkpoint_every=2, so iteration 3 was saved by the signal, not by the schedule
        assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["iteration"] == 3
        assert not (run_dir / "record.json").exists()
        resubmission = pickle.loads(requeued[0])
        assert resubmission.function.preemptions == 1
        assert not [k for k in vars(resubmission.function) if k.startswith("_")]  # no handlers pickled
        assert resubmission.result() == "done"
    finally:
        signal.signal(sig, old[0])
        signal.signal(signal.SIGALRM, old[1])
    record = read_record(run_dir / "record.json")
    assert record["resumed_from"] == 3 and record["iterations"] == reference["iterations"]
    assert record["slurm"]["preemptions"] == 1 and record["attempt"] == 1
    assert record["metrics"].keys() == reference["metrics"].keys()
    for task, metrics in reference["metrics"].items():
        assert record["metrics"][task] == pytest.approx(metrics, rel=1e-6), task


def test_signal_outside_training_is_handed_over_at_once(tmp_path, tiny_recipe):
    job = RunJob(cfg_for(tiny_recipe).to_dict(), str(tmp_path))
    seen = []
    sig = RunJob.signal_number()
    old = signal.signal(sig, lambda s, f: seen.append(s)), signal.getsignal(signal.SIGALRM)
    try:
        with job._signals(6) as guard:
            guard.on_iteration(6, lambda: None)  # training ended: the final evaluation runs now
            os.kill(os.getpid(), sig)
            assert seen == [sig] and guard.pending is None and guard.phase == "evaluate"
        assert signal.getsignal(sig) is not None and seen == [sig]
    finally:
        signal.signal(sig, old[0])
        signal.signal(signal.SIGALRM, old[1])


# --- the status table --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def done_record(tmp_path_factory):
    from mtbench.config import load_recipe
    from tests.conftest import TINY

    results = tmp_path_factory.mktemp("done")
    cfg = RunConfig("single", "synthetic", ("depth",), "resnet18", 0, load_recipe("smoke", TINY))
    launch.run_local([cfg], results, "cpu")
    return cfg, read_record(results / "runs" / cfg.run_id / "record.json")


def test_status_table_shows_every_state_failed_logs_and_the_leaderboard(tmp_path, done_record, monkeypatch, capsys):
    cfg_done, record = done_record
    write_record(tmp_path / "runs" / cfg_done.run_id, record)
    recipe = cfg_done.recipe
    failed_local = make_run(tmp_path, cfg_for(recipe, seed=1), {
        "status": "failed", "attempt": 1, "error": "NonFiniteLoss: loss is nan",
        "traceback": "Traceback (most recent call last):\n  File engine.py\nNonFiniteLoss: loss is nan\n"})
    pending = cfg_for(recipe, seed=2)
    make_run(tmp_path, pending, None, [{"job_id": "41_2", "attempt": 1}])
    lost = cfg_for(recipe, seed=3)
    err = tmp_path / "slurm" / "41_3" / "41_3_0_log.err"
    err.parent.mkdir(parents=True)
    err.write_text("".join(f"noise {i}\n" for i in range(30)) + "slurmstepd: error: *** JOB 41_3 CANCELLED DUE TO "
                   "TIME LIMIT ***\n")
    make_run(tmp_path, lost, None, [{"job_id": "41_3", "attempt": 1, "stderr": str(err)}])
    local = make_run(tmp_path, cfg_for(recipe, seed=4))
    lock = runstate.RunLock(local)
    assert lock.acquire()  # as a local executor training it holds it
    make_run(tmp_path, cfg_for(recipe, seed=5))  # config only: not started
    monkeypatch.setattr(status_cli, "query_slurm", lambda ids: {"41_2": "PENDING", "41_3": "TIMEOUT"})
    monkeypatch.setenv("COLUMNS", "250")
    rows, asked = status_cli.collect(tmp_path)
    by_seed = {r.seed: r for r in rows}
    assert asked and len(rows) == 6
    assert [by_seed[s].state for s in range(6)] == ["done", "failed", "pending", "failed", "running", "incomplete"]
    assert by_seed[1].log[-1] == "NonFiniteLoss: loss is nan" and by_seed[1].attempt == 1
    assert by_seed[3].job == "41_3 TIMEOUT" and "without writing a record" in by_seed[3].detail
    assert len(by_seed[3].log) == 10 and "TIME LIMIT" in by_seed[3].log[-1]
    assert by_seed[4].job == f"local pid {os.getpid()}" and socket.gethostname() in by_seed[4].detail
    assert status_cli.run(argparse.Namespace(results_dir=str(tmp_path), lines=5, no_leaderboard=False)) == 0
    lock.release()
    assert {r.seed: r for r in status_cli.collect(tmp_path)[0]}[4].state == "incomplete"  # released
    out = capsys.readouterr().out
    for needle in ["6 runs", "1 done", "2 failed", "1 pending", "1 running", "41_2 PENDING", "CANCELLED DUE TO TIME",
                   "NonFiniteLoss: loss is nan", "| **single-task refs** |", "failed run " + failed_local.name]:
        assert needle in out, needle
    assert (tmp_path / "leaderboards" / "leaderboard.md").is_file()


def test_status_of_a_missing_dir_says_so(tmp_path, capsys):
    assert main(["status", str(tmp_path / "nope")]) == 2
    assert "no runs" in capsys.readouterr().out
