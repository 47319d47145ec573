"""Checkpoints without a model run: loaded without unpickling code, never written non-finite, healed when corrupt,
refused (naming the file and the space) when the disk is full, pruned to the final weights when a run is done."""
import errno
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from mtbench import atomic, checkpoint


def _state(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0 - it / 100)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def _draws():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_checkpoint_loads_with_weights_only_and_restores_everything(tmp_path):
    model, opt, sched = _state()
    np.random.seed(5), random.seed(5)
    path = checkpoint.save(tmp_path, model, opt, sched, 7, {"history": [{"iteration": 5, "metrics": {
        "depth": {"rmse": np.float64(0.5)}}}]})
    after_save = _draws()
    payload = torch.load(path, weights_only=True)  # the safe loader reads every part of it
    assert payload["iteration"] == 7 and payload["extra"]["history"][0]["metrics"]["depth"]["rmse"] == 0.5
    model2, opt2, sched2 = _state(seed=1)
    resume = checkpoint.load_latest(tmp_path, model2, opt2, sched2, torch.device("cpu"))
    assert resume.iteration == 7 and resume.notes == [] and resume.extra["history"][0]["iteration"] == 5
    assert _draws() == after_save  # torch, numpy and python RNG continue exactly
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k
    assert opt2.state_dict()["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])
    assert sched2.last_epoch == sched.last_epoch == 1
    with pytest.raises(TypeError, match=r"\['extra'\]\['strategy'\] is a builtins.object"):
        checkpoint.save(tmp_path, model, opt, sched, 8, {"strategy": object()})


class Payload:
    """What a hostile checkpoint holds: unpickling it calls Path.touch (it could call anything)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_file_that_needs_unpickling_is_refused_and_runs_no_code(tmp_path):
    model, opt, sched = _state()
    marker = tmp_path / "code_ran"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"iteration": 3, "model": model.state_dict(), "x": Payload(marker)}, ckpt / "last.pt")
    with pytest.raises(checkpoint.UnsafeCheckpoint) as e:
        checkpoint.load_latest(ckpt, model, opt, sched, torch.device("cpu"))
    assert not marker.exists()
    assert "last.pt needs full unpickling" in str(e.value) and "python -m mtbench.checkpoint convert" in str(e.value)
    assert (ckpt / "last.pt").is_file()  # refused, not moved aside: it may be the user's only copy


def test_a_trusted_checkpoint_of_the_old_format_converts_and_resumes(tmp_path):
    model, opt, sched = _state()
    np.random.seed(3), random.seed(3)
    old = {"iteration": 4, "model": model.state_dict(), "optimizer": opt.state_dict(),
           "scheduler": sched.state_dict(), "extra": {"history": []},
           "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}}
    torch.save(old, tmp_path / "last.pt")  # what mtbench wrote before: numpy arrays, tuples
    expected = _draws()
    with pytest.raises(checkpoint.UnsafeCheckpoint):
        checkpoint.read(tmp_path / "last.pt")
    assert checkpoint.main(["convert", str(tmp_path / "last.pt")]) == 0
    resume = checkpoint.load_latest(tmp_path, *_state(seed=2), torch.device("cpu"))
    assert resume.iteration == 4 and _draws() == expected


def test_non_finite_weights_are_never_written(tmp_path):
    model, opt, sched = _state()
    checkpoint.save(tmp_path, model, opt, sched, 2)
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    with pytest.raises(checkpoint.NonFiniteState, match=r"after iteration 4 \(2.weight\).*last good checkpoint "
                                                         r"\(iteration 2\)"):
        checkpoint.save(tmp_path, model, opt, sched, 4)
    assert checkpoint.saved_iteration(tmp_path) == 2
    assert torch.isfinite(checkpoint.read(tmp_path / "last.pt")["model"]["2.weight"]).all()


def test_a_corrupt_checkpoint_is_moved_aside_and_the_previous_one_used(tmp_path):
    model, opt, sched = _state()
    checkpoint.save(tmp_path, model, opt, sched, 2)
    checkpoint.save(tmp_path, model, opt, sched, 4)
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])  # torn by a disk or a copy, not by mtbench
    resume = checkpoint.load_latest(tmp_path, *_state(seed=1), torch.device("cpu"))
    assert resume.iteration == 2
    moved = list(tmp_path.glob("last.pt.corrupt-*"))
    assert len(moved) == 1 and moved[0].stat().st_size == len(data) // 2  # kept for inspection
    assert "last.pt: not a readable checkpoint" in resume.notes[0] and moved[0].name in resume.notes[0]
    assert resume.notes[-1] == "resumed from previous.pt at iteration 2"
    (tmp_path / "previous.pt").write_bytes(b"\0" * 100)
    resume = checkpoint.load_latest(tmp_path, *_state(seed=1), torch.device("cpu"))
    assert resume.iteration == 0 and "restarts from iteration 0" in resume.notes[-1]


def test_a_full_disk_names_the_file_and_the_space_it_needs(tmp_path, monkeypatch):
    model, opt, sched = _state()
    monkeypatch.setattr(atomic, "free_bytes", lambda path: 1000)
    with pytest.raises(atomic.DiskFull, match=r"could not write .*last.pt: no space left.*needs about 1 MB"):
        checkpoint.save(tmp_path, model, opt, sched, 2)
    monkeypatch.undo()

    def full(*args, **kwargs):  # what torch's zip writer does when the disk fills mid-write
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(atomic.DiskFull, match=r"could not write .*last.pt: no space left on the disk; it needs"):
        checkpoint.save(tmp_path, model, opt, sched, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temp file left behind


def test_stale_temps_are_told_from_live_ones(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    live = tmp_path / f".last.pt.{atomic.HOST_TAG}-{os.getpid()}.abc.tmp"
    stale = tmp_path / "sub" / f".record.json.{atomic.HOST_TAG}-{dead_pid}.abc.tmp"
    old = tmp_path / ".last.abcdef.tmp"  # a temp name from before pids were in them
    for p in (live, stale, old):
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x" * 10)
    os.utime(old, (0, 0))
    assert not atomic.is_stale(live) and atomic.is_stale(stale) and atomic.is_stale(old)
    assert atomic.clean_stale_temps(tmp_path) == (2, 20)
    assert live.exists() and atomic.clean_stale_temps(tmp_path, everything=True) == (1, 10)


def test_a_finished_run_keeps_only_its_final_weights(tmp_path):
    model, opt, sched = _state()
    checkpoint.save(tmp_path, model, opt, sched, 2)
    checkpoint.save(tmp_path, model, opt, sched, 4)
    assert checkpoint.prune(tmp_path) == 0  # not finished: the training state stays
    checkpoint.save_final(tmp_path, model, 4)
    size = (tmp_path / "last.pt").stat().st_size + (tmp_path / "previous.pt").stat().st_size
    assert checkpoint.prune(tmp_path) == size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.pt"]
    weights = checkpoint.load_weights(tmp_path)
    assert set(weights) == set(model.state_dict())
    assert torch.load(tmp_path / "final.pt", weights_only=True)["iteration"] == 4
    assert (tmp_path / "final.pt").stat().st_size < size / 2  # no optimizer state

