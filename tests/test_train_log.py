"""The per-iteration training log and the plain progress lines: survives resume without duplicates, readable
where stdout is not a terminal, and catches a non-finite loss at its window."""
import json

import pytest
import torch

from mtbench import engine
from mtbench.config import RunConfig
from mtbench.train_log import LOG_NAME, TEXT_LOG_NAME, NonFiniteLoss, TrainLog, read_log


class Crash(RuntimeError):
    pass


def test_log_has_every_iteration_once_after_a_resume(tmp_path, tiny_recipe):
    recipe = {**tiny_recipe, "iterations": 25, "checkpoint_every": 10}
    cfg = RunConfig("baseline", "synthetic", ("semseg", "depth"), "resnet18", 0, recipe)
    run_dir = tmp_path / "runs" / cfg.run_id

    def crash_at_17(it, save):  # lines 11..17 were written (flush at 20 never came), the checkpoint is at 10
        if it == 17:
            raise Crash()

    log = None
    with pytest.raises(Crash):
        engine.run(cfg, run_dir, on_iteration=crash_at_17)
    log = read_log(run_dir / LOG_NAME)
    assert [r["iteration"] for r in log] == list(range(1, 11)), "only flushed windows reach the file"
    rec = engine.run(cfg, run_dir)
    log = read_log(run_dir / LOG_NAME)
    assert rec["resumed_from"] == 10
    assert [r["iteration"] for r in log] == list(range(1, 26))
    for r in log:
        assert set(r["losses"]) == {"semseg", "depth"}
        assert r["loss"] == pytest.approx(sum(r["losses"].values()))
        assert r["lr"] > 0 and r["step_s"] >= r["data_s"] >= 0
    assert rec["training"]["iterations_logged"] == 15 and 0 <= rec["training"]["data_wait_fraction"] < 1


def test_plain_lines_where_stdout_is_not_a_terminal(tmp_path, tiny_recipe, capsys):
    recipe = {**tiny_recipe, "iterations": 20, "eval_every": 10}
    cfg = RunConfig("single", "synthetic", ("depth",), "resnet18", 3, recipe)
    run_dir = tmp_path / "runs" / cfg.run_id
    engine.run(cfg, run_dir)
    out = capsys.readouterr().out
    assert "single depth s3: training from scratch, 20 iterations" in out
    assert "it 10/20 loss" in out and "img/s ETA" in out and "it 20/20" in out
    assert "eval at it 10: depth rmse" in out and "eval at it 20: depth rmse" in out
    text = (run_dir / TEXT_LOG_NAME).read_text()
    assert [line.split("] ", 1)[1] for line in text.splitlines()] == \
        [line.split("] ", 1)[1] for line in out.splitlines() if "single depth s3:" in line]
    assert max(len(line) for line in out.splitlines()) <= 120


def test_non_finite_loss_is_caught_at_the_window_and_not_written(tmp_path):
    log = TrainLog(tmp_path, "x", total=100, start=0, batch_size=2, sync_every=5, plain=False)
    for it in range(1, 5):
        log.step(it, {"a": torch.tensor(1.0), "b": torch.tensor(2.0)}, 0.1, 0.01, 0.0)
    with pytest.raises(NonFiniteLoss, match=r"iteration 5 \(b nan\)"):
        log.step(5, {"a": torch.tensor(1.0), "b": torch.tensor(float("nan"))}, 0.1, 0.01, 0.0)
    assert not (tmp_path / LOG_NAME).exists() or not (tmp_path / LOG_NAME).read_text()


def test_torn_last_line_is_ignored_and_dropped_on_resume(tmp_path):
    path = tmp_path / LOG_NAME
    path.write_text("".join(json.dumps({"iteration": i, "loss": 1.0}) + "\n" for i in range(1, 6)) + '{"itera')
    assert [r["iteration"] for r in read_log(path)] == [1, 2, 3, 4, 5]
    TrainLog(tmp_path, "x", total=10, start=3, batch_size=1, plain=False)
    assert [r["iteration"] for r in read_log(path)] == [1, 2, 3]
