"""Issue 11 and the run-level parts of issue 14, tried as a user would: faults (signals, kills, corrupt and unreadable
files, a full disk, a second process, SLURM down) and bad input. Most tests replace the training by a stand-in
(``fake_engine``) and check what the executor, the checkpoints and the CLI do around it; the few that need real
training use the tiny recipe."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtbench import atomic, checkpoint, engine, launch
from mtbench.cli import main
from mtbench.config import RunConfig, load_recipe
from mtbench.records import read_record, write_record
from mtbench.runstate import RunLock, write_json
from mtbench.train_log import NonFiniteLoss

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY  # noqa: E402
from fixtures_real import write_nyud  # noqa: E402

PRIMARY = {"semseg": "mIoU", "depth": "rmse"}


def cfg_for(recipe, method="single", tasks=("depth",), seed=0):
    return RunConfig(method, "synthetic", tasks, "resnet18", seed, recipe)


def argv_for(results, *extra, overrides=TINY):
    """A one-run grid (single, depth) on the tiny recipe; ``extra`` comes last, so its --set wins."""
    argv = ["--methods", "single", "--tasks", "depth", "--results", str(results)]
    for o in overrides:
        argv += ["--set", o]
    return argv + list(extra)


def run_main(argv):
    """main's exit code, also where argparse exits (a bad option value)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def done_record(cfg, value=1.0):
    """A finished run's record, as the engine writes it (the fields the leaderboard and status read)."""
    return {"run_id": cfg.run_id, "status": "done", "config": cfg.to_dict(), "method": cfg.method,
            "dataset": cfg.dataset, "tasks": list(cfg.tasks), "backbone": cfg.backbone, "seed": cfg.seed,
            "recipe_name": cfg.recipe["name"], "setting_key": cfg.setting_key,
            "single_task_reference": cfg.method == "single",
            "metrics": {t: {PRIMARY[t]: value, "loss": 0.5} for t in cfg.tasks},
            "primary_metrics": {t: PRIMARY[t] for t in cfg.tasks},
            "higher_is_better": {t: {PRIMARY[t]: t == "semseg"} for t in cfg.tasks},
            "trivial": {t: {PRIMARY[t]: 2.0} for t in cfg.tasks}, "params": {"total": 1000}, "flops": None,
            "iterations": cfg.recipe["iterations"], "resumed_from": 0, "precision": "fp32",
            "dataset_info": {"image_size": [32, 48]}, "train_time_s": 0.0, "eval_time_s": 0.0}


@pytest.fixture
def fake_engine(monkeypatch):
    """Replace training by ``behaviour(cfg, run_dir, on_iteration)``; returns the list of runs it was called for."""
    calls = []

    def install(behaviour=None):
        def fake_run(cfg, run_dir, device=None, progress=None, on_iteration=None):
            calls.append(cfg.run_id)
            if behaviour is not None:
                behaviour(cfg, Path(run_dir), on_iteration)
            return done_record(cfg)

        monkeypatch.setattr(engine, "run", fake_run)
        return calls

    return install


def tiny_checkpoint(run_dir, iteration):
    """A real training checkpoint (of a tiny model) in ``run_dir/checkpoints``."""
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0)
    return checkpoint.save(run_dir / "checkpoints", model, opt, sched, iteration)


# --- 11.2 --force starts from nothing ---------------------------------------------------------------------------

def test_force_starts_from_nothing_and_says_so(tmp_path, tiny_recipe, fake_engine, capsys):
    cfg = cfg_for(tiny_recipe)
    run_dir = tmp_path / "runs" / cfg.run_id
    write_record(run_dir, done_record(cfg))
    tiny_checkpoint(run_dir, 6)
    (run_dir / "train_log.jsonl").write_text('{"iteration": 1}\n')
    seen = []
    fake_engine(lambda c, d, hook: seen.append(sorted(p.name for p in d.iterdir())))
    assert launch.run_local([cfg], tmp_path, "cpu")[cfg.run_id] == "skipped (done)"
    assert launch.run_local([cfg], tmp_path, "cpu", force=True)[cfg.run_id] == "done"
    assert seen == [["config.json", "lock.json"]]  # no record, checkpoint or log left to resume from
    out = capsys.readouterr().out.replace("\n", " ")
    assert f"--force: {cfg.run_id} starts from nothing (removed record.json, checkpoints, train_log.jsonl)" in out


# --- 11.3 a diverged run never poisons its checkpoint -----------------------------------------------------------

def test_failed_record_names_the_last_good_checkpoint(tmp_path, tiny_recipe, fake_engine):
    cfg = cfg_for(tiny_recipe)

    def diverge(c, run_dir, hook):
        tiny_checkpoint(run_dir, 4)
        raise NonFiniteLoss("loss is not finite at iteration 5 (depth nan)")

    fake_engine(diverge)
    launch.run_local([cfg], tmp_path, "cpu")
    rec = read_record(tmp_path / "runs" / cfg.run_id / "record.json")
    assert rec["status"] == "failed" and rec["last_checkpoint"] == 4
    assert rec["error"] == ("NonFiniteLoss: loss is not finite at iteration 5 (depth nan) (last good checkpoint: "
                            "iteration 4)")


def test_weights_that_go_non_finite_are_never_checkpointed(tmp_path, tiny_recipe, monkeypatch):
    """The loss is finite when it is computed, then the optimizer step makes the weights NaN (an exploding
    update): the checkpoint after that step must not be written."""
    real_build = engine.build_optimizer

    def exploding(model, cfg):
        opt, steps = real_build(model, cfg), []

        def poison_after_third_step(optimizer, args, kwargs):
            steps.append(1)
            if len(steps) == 3:
                with torch.no_grad():
                    next(model.parameters()).fill_(float("nan"))

        opt.register_step_post_hook(poison_after_third_step)
        return opt

    monkeypatch.setattr(engine, "build_optimizer", exploding)
    recipe = {**tiny_recipe, "checkpoint_every": 1}
    cfg = cfg_for(recipe)
    out = launch.run_local([cfg], tmp_path, "cpu", max_retries=0)
    run_dir = tmp_path / "runs" / cfg.run_id
    assert out[cfg.run_id].startswith("failed: NonFiniteState: weights are not finite after iteration 3")
    rec = read_record(run_dir / "record.json")
    assert rec["last_checkpoint"] == 2 and "last good checkpoint (iteration 2) is kept" in rec["error"]
    kept = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert kept["iteration"] == 2 and all(torch.isfinite(v).all() for v in kept["model"].values()
                                          if v.is_floating_point())


# --- 11.4 one unreadable record sinks nothing -------------------------------------------------------------------

def test_unreadable_records_are_skipped_listed_and_fail_nothing(tmp_path, tiny_recipe, fake_engine, capsys,
                                                                monkeypatch):
    good = cfg_for(tiny_recipe)
    write_record(tmp_path / "runs" / good.run_id, done_record(good))
    for name, text in [("garbled", '{"status": "do'), ("a_list", "[]"), ("no_metrics", '{"status": "done"}')]:
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "record.json").write_text(text)
    assert main(["leaderboard", str(tmp_path)]) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    board = (tmp_path / "leaderboards" / "leaderboard.md").read_text()
    assert "| **single-task refs** |" in board
    for name in ("garbled", "a_list", "no_metrics"):
        path = tmp_path / "runs" / name / "record.json"
        assert f"unreadable record {path} skipped" in board and f"unreadable record {path} skipped" in out
    assert "delete or move it away" in board
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 unreadable" in out and "a JSON list, not an object" in out and "not readable JSON" in out
    # a grid whose own runs are fine exits 0 though other records under --results are unreadable
    fake_engine()
    other = cfg_for(tiny_recipe, seed=1)
    assert main(argv_for(tmp_path, "--seeds", "1")) == 0
    assert read_record(tmp_path / "runs" / other.run_id / "record.json")["status"] == "done"


# --- 11.5 corrupt files are named and healed --------------------------------------------------------------------

def test_a_corrupt_scene_cache_is_rendered_again(tmp_path, capsys):
    from mtbench.data import synthetic

    args = ("train", 2, 16, 24, 0, tmp_path)
    first = synthetic.load_or_render(*args)
    path = synthetic.cache_path(tmp_path, "train", 2, 16, 24, 0)
    path.write_bytes(path.read_bytes()[:500])
    again = synthetic.load_or_render(*args)
    assert f"corrupt synthetic-scene cache, rendering it again: {path}" in capsys.readouterr().err
    assert all((again[k] == first[k]).all() for k in first)
    assert synthetic.read_cache(path, 2).keys() == first.keys()  # the cache is whole again


def test_a_corrupt_checkpoint_restarts_the_run_and_the_record_says_so(tmp_path, tiny_recipe):
    recipe = {**tiny_recipe, "iterations": 2, "checkpoint_every": 1}
    cfg = cfg_for(recipe)
    run_dir = tmp_path / "runs" / cfg.run_id
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 torn")
    rec = engine.run(cfg, run_dir, device=torch.device("cpu"))
    assert rec["resumed_from"] == 0
    assert "last.pt: not a readable checkpoint" in rec["resume_notes"][0]
    assert rec["resume_notes"][-1] == "no readable checkpoint left: training restarts from iteration 0"
    assert len(list((run_dir / "checkpoints").glob("last.pt.corrupt-*"))) == 1
    assert "not a readable checkpoint" in (run_dir / "train.log").read_text()


def test_a_read_error_names_the_file(tmp_path):
    from mtbench.data import nyud
    from mtbench.data.folder import DataFileError

    root = write_nyud(tmp_path)
    bad = root / "images" / "0001.png"
    bad.write_bytes(bad.read_bytes()[:200])
    ds = nyud.build("val", ("semseg", "depth"), {"data_dir": str(root), "pad_size": [64, 64]})
    with pytest.raises(DataFileError, match=rf"^{bad}: OSError: .*truncated"):
        ds[0]
    (root / "depth" / "0002.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataFileError, match=rf"^{root / 'depth' / '0002.npy'}: "):
        ds[1]


# --- 11.6 a full disk ---------------------------------------------------------------------------------------------

def test_a_full_disk_fails_the_run_with_the_file_named_and_the_grid_goes_on(tmp_path, tiny_recipe, fake_engine,
                                                                           monkeypatch, capsys):
    first, second = cfg_for(tiny_recipe, seed=0), cfg_for(tiny_recipe, seed=1)
    real_write_record = launch.write_record

    def full_for_first(cfg, run_dir, hook):
        if cfg.seed == 0:
            real_free = atomic.free_bytes
            atomic.free_bytes = lambda path: 10  # too little for a checkpoint, for this run only
            try:
                tiny_checkpoint(run_dir, 2)
            finally:
                atomic.free_bytes = real_free

    def record_writer(run_dir, record):  # the disk is too full for the failed record too
        if record.get("status") == "failed":
            raise atomic.disk_full(Path(run_dir) / "record.json", 2000, OSError(28, "No space left on device"))
        real_write_record(run_dir, record)

    monkeypatch.setattr(launch, "write_record", record_writer)
    fake_engine(full_for_first)
    out = launch.run_local([first, second], tmp_path, "cpu")
    monkeypatch.undo()
    assert out[first.run_id].startswith("failed: DiskFull: ")
    assert f"could not write {tmp_path / 'runs' / first.run_id / 'checkpoints' / 'last.pt'}" in out[first.run_id]
    assert "it needs about 1 MB" in out[first.run_id]
    assert out[second.run_id] == "done"
    said = capsys.readouterr().out.replace("\n", " ")
    assert "could not write its failed record either" in said and "record.json: no space left" in said
    assert not list((tmp_path / "runs").rglob("*.tmp"))


# --- 11.7 temp files of interrupted writes ------------------------------------------------------------------------

def test_temp_files_of_interrupted_writes_are_removed_when_the_run_starts(tmp_path, tiny_recipe, fake_engine, capsys):
    cfg = cfg_for(tiny_recipe)
    run_dir = tmp_path / "runs" / cfg.run_id
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / ".last.x1y2z3.tmp").write_bytes(b"\0" * 3000)  # a kill mid-checkpoint
    (run_dir / f".record.json.{atomic.HOST_TAG}-1.q.tmp").write_bytes(b"{")
    fake_engine()
    launch.run_local([cfg], tmp_path, "cpu")
    assert not list(run_dir.rglob("*.tmp"))
    assert f"{cfg.run_id}: removed 2 temp file(s) (3 kB) left by an interrupted write" in \
        capsys.readouterr().out.replace("\n", " ")


# --- 11.8 one process per run -------------------------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from mtbench.runstate import RunLock
lock = RunLock(Path(sys.argv[1]))
assert lock.acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_run_trained_by_a_live_process_is_waited_for_not_trained_twice(tmp_path, tiny_recipe, fake_engine, capsys):
    busy, free = cfg_for(tiny_recipe, seed=0), cfg_for(tiny_recipe, seed=1)
    busy_dir = tmp_path / "runs" / busy.run_id
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(busy_dir), "6"], stdout=subprocess.PIPE, text=True,
                              env=env)
    assert holder.stdout.readline().strip() == "locked"

    def other_process_finishes(cfg, run_dir, hook):
        if cfg.seed == 1:  # meanwhile, the other process writes its record and exits
            write_record(busy_dir, done_record(busy))

    calls = fake_engine(other_process_finishes)
    t0 = time.monotonic()
    out = launch.run_local([busy, free], tmp_path, "cpu")
    holder.wait(timeout=30)
    assert calls == [free.run_id]  # the locked run was not trained a second time
    assert out == {busy.run_id: "skipped (done)", free.run_id: "done"}
    assert time.monotonic() - t0 >= 3  # it waited for the holder
    said = capsys.readouterr().out.replace("\n", " ")
    assert f"{busy.run_id} is being trained by pid {holder.pid} on {socket.gethostname()}" in said
    assert f"waiting for pid {holder.pid}" in said


def test_the_stale_lock_of_a_dead_process_is_taken_over(tmp_path, tiny_recipe, fake_engine, capsys):
    cfg = cfg_for(tiny_recipe)
    run_dir = tmp_path / "runs" / cfg.run_id
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_json(run_dir / "lock.json", {"pid": int(dead.stdout), "host": socket.gethostname(),
                                       "started_at": "2026-01-01T00:00:00+00:00"})  # kill -9 left it
    assert RunLock(run_dir).holder() is None
    calls = fake_engine()
    launch.run_local([cfg], tmp_path, "cpu")
    assert calls == [cfg.run_id] and not (run_dir / "lock.json").exists()
    assert f"took over the lock left by pid {int(dead.stdout)}" in capsys.readouterr().out.replace("\n", " ")


# --- 11.9 one clear line, never a traceback ----------------------------------------------------------------------

@pytest.mark.parametrize("recipe_text, needle", [
    ("iterations: 3\noptimizer: {name: sgd, lr: 0.1\n", "not valid YAML (line 3, column 1)"),
    ("optimizer: 3\n", "optimizer must be a section (a mapping of key: value), got 3"),
    ("- iterations\n", "a recipe is a mapping of key: value, got a list"),
])
def test_a_bad_recipe_file_is_one_line(tmp_path, recipe_text, needle, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(recipe_text)
    assert main(["--recipe", str(path), "--results", str(tmp_path / "res")]) == 2
    out = capsys.readouterr().out
    assert needle in out.replace("\n", " ") and "Traceback" not in out


def test_brackets_in_paths_and_messages_are_printed_as_they_are(tmp_path, fake_engine, capsys, monkeypatch):
    results = tmp_path / "res[/x]"

    def fail(cfg, run_dir, hook):
        raise RuntimeError("shape [/bold] mismatch")

    fake_engine(fail)
    monkeypatch.setenv("MTBENCH_MAX_RETRIES", "0")
    assert main(argv_for(results)) == 1
    out = capsys.readouterr().out.replace("\n", " ")
    assert "RuntimeError: shape [/bold] mismatch" in out and f"leaderboard written to {results}" in out
    assert main(["status", str(results)]) == 0 and "shape [/bold] mismatch" in capsys.readouterr().out


def test_ctrl_c_saves_the_step_and_says_how_to_resume(tmp_path, fake_engine, capsys):
    saved = []

    def interrupted_at_3(cfg, run_dir, hook):
        for it in range(1, 7):
            if it == 3:
                os.kill(os.getpid(), signal.SIGINT)  # arrives during iteration 3
            hook(it, lambda it=it: saved.append(it))

    fake_engine(interrupted_at_3)
    assert main(argv_for(tmp_path)) == 130
    out = capsys.readouterr().out.replace("\n", " ")
    assert saved == [3]
    assert "SIGINT during iteration 3: saving a checkpoint after it" in out
    assert "stopped: SIGINT:" in out and "saved at iteration 3/6" in out
    assert "re-running the same command resumes it from there" in out and "Traceback" not in out
    run = next((tmp_path / "runs").iterdir())
    assert not (run / "record.json").exists() and not (run / "lock.json").exists()  # not a failed attempt


# --- 11.10 bad input refused before any run starts or any data is rendered ----------------------------------------

@pytest.mark.parametrize("extra, needle", [
    (["--backbone", "resnet81"], "unknown backbone 'resnet81'. Known backbones: "),
    (["--set", "checkpoint_every=0"], "checkpoint_every must be a positive integer, got 0"),
    (["--set", "checkpoint_every=abc"], "checkpoint_every must be a positive integer, got 'abc'"),
    (["--set", "optimizer.lr=abc"], "optimizer.lr must be a number > 0, got 'abc'"),
    (["--set", "num_workers=-1"], "num_workers must be an integer ≥ 0, got -1"),
    (["--set", "optimizer.lrr=0.1"], "unknown key 'optimizer.lrr'. Did you mean 'lr'?"),
    (["--set", "methods.single.head_chanels=8"], "unknown key 'methods.single.head_chanels'. Did you mean "
                                                 "'head_channels'?"),
    (["--set", "datasets.synthetic.n_trian=8"], "Did you mean 'n_train'?"),
    (["--set", "eval.edge_nms=maybe"], "eval.edge_nms must be null or true or false, got 'maybe'"),
    (["--set", "backbone_cfg.drop_path_ratee=0.1"], "backbone_cfg {'drop_path_ratee': 0.1} is not accepted by "
                                                   "backbone 'resnet18'"),
    (["--set", "batch_size=8"], "training split has 6 images, fewer than the global batch_size 8"),
    (["--devices", "0"], "--devices 0: give the number of processes"),
    (["--devices", "-1"], "--devices -1: give the number of processes"),
    (["--devices", "4"], "--devices 4 does not divide the recipe's global batch_size 2"),
    (["--seeds", "a-b"], "seeds are integers: N, a list N,M,... or a range N-M"),
])
def test_bad_input_is_refused_before_anything_runs(tmp_path, extra, needle, capsys):
    rc = run_main(argv_for(tmp_path, *extra))
    out = capsys.readouterr()
    assert needle in (out.out + out.err).replace("\n", " ")
    assert rc == 2 and "Traceback" not in out.out + out.err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()  # nothing ran or was rendered


# --- 11.11 signals on the local executor -----------------------------------------------------------------------

def test_sigterm_saves_at_the_end_of_the_step_and_the_rerun_resumes_there(tmp_path, tiny_recipe, monkeypatch):
    class Killed(Exception):
        pass

    def die(signum, frame):  # stands for the default action (the process dies where it is)
        raise Killed()

    recipe = {**tiny_recipe, "checkpoint_every": 1000}  # no periodic checkpoint: only the signal saves
    cfg = cfg_for(recipe)
    real_losses, calls = engine.task_losses, []

    def losses_then_signal(*args):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # during the step of iteration 3
        return real_losses(*args)

    monkeypatch.setattr(engine, "task_losses", losses_then_signal)
    previous = signal.signal(signal.SIGTERM, die)
    try:
        with pytest.raises(launch.Interrupted) as e:
            launch.run_local([cfg], tmp_path, "cpu")
    finally:
        signal.signal(signal.SIGTERM, previous)
    run_dir = tmp_path / "runs" / cfg.run_id
    assert e.value.signum == signal.SIGTERM and "saved at iteration 3/6" in str(e.value)
    assert checkpoint.saved_iteration(run_dir / "checkpoints") == 3
    assert not (run_dir / "record.json").exists() and not (run_dir / "lock.json").exists()
    monkeypatch.setattr(engine, "task_losses", real_losses)
    assert launch.run_local([cfg], tmp_path, "cpu")[cfg.run_id] == "done"
    assert read_record(run_dir / "record.json")["resumed_from"] == 3


# --- 11.12 SLURM controller down -----------------------------------------------------------------------------------

def test_a_finished_grid_rebuilds_its_leaderboard_with_the_slurm_controller_down(tmp_path, monkeypatch, capsys):
    recipe = load_recipe("smoke", TINY)
    cfg = cfg_for(recipe)
    run_dir = tmp_path / "res" / "runs" / cfg.run_id
    write_record(run_dir, done_record(cfg))
    write_json(run_dir / "slurm.json", {"run_id": cfg.run_id, "jobs": [{"job_id": "12_0", "attempt": 1}]})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("squeue", "sacct", "sbatch"):
        (bin_dir / tool).write_text("#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\n"
                                    "exit 1\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    argv = argv_for(tmp_path / "res", "--executor", "slurm", "--cluster", "local")
    assert main(argv) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert "every run of this grid is finished: nothing to submit" in out
    assert (tmp_path / "res" / "leaderboards" / "leaderboard.md").is_file()
    unfinished = argv_for(tmp_path / "res", "--executor", "slurm", "--cluster", "local", "--seeds", "0,1")
    assert main(unfinished) == 2 and "is slurmctld reachable" in capsys.readouterr().out


# --- 14.3 one default-recipe rule; tables that never share a title ------------------------------------------------

def test_one_default_recipe_rule_everywhere(capsys, tmp_path):
    from mtbench.config import ConfigError, default_recipe
    from mtbench.registry import DATASETS

    assert default_recipe("synthetic") == "smoke" and default_recipe("nyud") == "nyud"
    assert default_recipe("pascal") == "pascal"
    DATASETS.register("no_recipe_ds")(lambda split, tasks, cfg: None)
    try:
        with pytest.raises(ConfigError, match="dataset 'no_recipe_ds' has no default recipe; pass --recipe"):
            default_recipe("no_recipe_ds")
    finally:
        DATASETS._entries.pop("no_recipe_ds")
    assert main(["--dataset", "nyud", "--results", str(tmp_path)]) == 2  # no --data-dir
    out = capsys.readouterr().out.replace("\n", " ")
    assert "recipe 'nyud'" in out and "the nyud dataset needs --data-dir" in out


def test_tables_of_different_settings_never_share_a_title():
    from mtbench.leaderboard import build_tables

    a = cfg_for(load_recipe("smoke", TINY))
    b = cfg_for(load_recipe("smoke", TINY + ["iterations=8"]))
    c = cfg_for(load_recipe("smoke", TINY), seed=1)
    rec_c = {**done_record(c), "config": {**c.to_dict(), "backbone_weights": "/w/resnet18_in1k.pth"}}
    rec_b = {**done_record(b), "precision": "bf16-autocast", "dataset_info": {"image_size": [64, 96]}}
    tables = build_tables([done_record(a), rec_b])
    titles = [t.title for t in tables]
    assert len(set(titles)) == 2
    assert any("recipe smoke, 6 it, 32x48, fp32, random init, --set batch_size=2" in t for t in titles)
    assert any("recipe smoke, 8 it, 64x96, bf16, random init" in t and "iterations=8" in t for t in titles)
    # runs whose settings read the same (a recipe file edited between them) still get two titles
    twin = {**done_record(a), "setting_key": "feedbeef", "run_id": "other"}
    assert len({t.title for t in build_tables([done_record(a), twin])}) == 2
    assert "weights resnet18_in1k.pth" in build_tables([rec_c])[0].title


# --- 14.5 + 11.2 end to end: a finished run keeps its final weights; --force retrains ------------------------------

def test_a_finished_run_keeps_its_final_weights_and_force_retrains_it(tmp_path, capsys):
    assert main(argv_for(tmp_path)) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["final.pt"]
    final = torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)
    assert final["iteration"] == 6 and "optimizer" not in final
    capsys.readouterr()
    assert main(argv_for(tmp_path, "--force", "--keep-checkpoints")) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    rec = read_record(run_dir / "record.json")
    assert f"--force: {run_dir.name} starts from nothing" in out and "training from scratch" in \
        (run_dir / "train.log").read_text()
    assert rec["resumed_from"] == 0 and rec["train_images_per_s"] > 0
    assert {"final.pt", "last.pt"} <= {p.name for p in (run_dir / "checkpoints").iterdir()}


# --- 14.6 the data is checked before a grid trains -----------------------------------------------------------------

def _nyud_argv(root, results, *extra):
    argv = ["--methods", "single", "--tasks", "semseg", "--dataset", "nyud", "--data-dir", str(root), "--recipe",
            "smoke", "--results", str(results)]
    for o in ["iterations=2", "batch_size=2", "num_workers=0", "methods.single.head_channels=8",
              "eval.edge_thresholds=3", "eval.edge_workers=1", "datasets.nyud.pad_size=[64,64]"]:
        argv += ["--set", o]
    return argv + list(extra)


def test_a_truncated_image_stops_the_grid_before_it_trains(tmp_path, capsys):
    root = write_nyud(tmp_path / "data")
    bad = root / "images" / "0002.png"
    bad.write_bytes(bad.read_bytes()[:300])
    assert main(_nyud_argv(root, tmp_path / "res")) == 2
    out = capsys.readouterr().out.replace("\n", " ")
    assert f"{bad}: unreadable (" in out and "python bench.py data check --dataset nyud" in out
    assert not (tmp_path / "res" / "runs").exists()


def test_nyud_at_480x640_is_detected_with_the_fix(tmp_path, capsys):
    root = write_nyud(tmp_path / "data", shape=(480, 640))
    assert main(_nyud_argv(root, tmp_path / "res", "--set", "datasets.nyud.pad_size=[448,576]")) == 2
    out = capsys.readouterr().out.replace("\n", " ")
    assert "5 image(s) of 480x640" in out and "datasets.nyud.pad_size=[480,640]" in out
    assert "425x560" in out and not (tmp_path / "res" / "runs").exists()
