"""Data parallel on CPU (gloo, 2 processes): metrics and weights match one process exactly."""
import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from mtbench import engine
from mtbench.config import RunConfig, load_recipe
from mtbench.distributed import free_port, per_device_batch, prepare_model, to_sync_bn
from mtbench.metrics.boundary import BoundaryEvaluator
from mtbench.metrics.depth import DepthEvaluator
from mtbench.metrics.normals import NormalsEvaluator
from mtbench.metrics.saliency import SaliencyEvaluator
from mtbench.metrics.segmentation import SegmentationEvaluator
from mtbench.registry import METHODS, register_method

N_IMAGES = 5  # odd on purpose: ranks get 3 and 2 images


def _evaluators():
    return {"seg": SegmentationEvaluator(4), "depth": DepthEvaluator(), "normals": NormalsEvaluator(),
            "sal": SaliencyEvaluator(),
            "edge": BoundaryEvaluator(max_dist=0.05, thresholds=5, nms=False, workers=1)}


def _images():
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(N_IMAGES):
        seg_t = torch.randint(0, 4, (1, 6, 7), generator=g)
        seg_t[0, 0, :3] = 255
        depth_t = torch.rand(1, 6, 7, generator=g) * 3
        depth_t[0, 1, :2] = 0
        nt = torch.nn.functional.normalize(torch.randn(1, 3, 6, 7, generator=g), dim=1)
        out.append({
            "seg": (torch.randint(0, 4, (1, 6, 7), generator=g), seg_t),
            "depth": (torch.rand(1, 6, 7, generator=g) * 3, depth_t),
            "normals": (torch.randn(1, 3, 6, 7, generator=g), nt),
            "sal": (torch.rand(1, 6, 7, generator=g), (torch.rand(1, 6, 7, generator=g) > 0.6).long()),
            "edge": (torch.rand(1, 6, 7, generator=g), (torch.rand(1, 6, 7, generator=g) > 0.8).float()),
        })
    return out


def _init(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def _eval_worker(rank, world, port, out_path):
    _init(rank, world, port)
    evs = _evaluators()
    for img in _images()[rank::world]:
        for k, ev in evs.items():
            ev.update(*img[k])
    for ev in evs.values():
        ev.sync()
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump({k: ev.compute() for k, ev in evs.items()}, f)
    dist.destroy_process_group()


def test_two_process_metrics_equal_one_process(tmp_path):
    evs = _evaluators()
    for img in _images():
        for k, ev in evs.items():
            ev.update(*img[k])
    single = {k: ev.compute() for k, ev in evs.items()}
    out = tmp_path / "m.json"
    mp.spawn(_eval_worker, args=(2, free_port(), str(out)), nprocs=2)
    multi = json.loads(out.read_text())
    for k in single:
        for m, v in single[k].items():
            assert multi[k][m] == pytest.approx(v, abs=1e-6), (k, m)


class NoBN(nn.Module):
    """A model without BatchNorm: its gradient does not depend on how the batch is split."""

    def __init__(self, task_channels):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.heads = nn.ModuleDict({t: nn.Conv2d(8, c, 1) for t, c in task_channels.items()})

    def forward(self, x):
        f = self.backbone(x)
        return {"final": {t: h(f) for t, h in self.heads.items()}, "aux": {}}


if "_test_nobn" not in METHODS._entries:
    register_method("_test_nobn")(lambda task_channels, backbone, cfg: NoBN(task_channels))

TASKS = ("semseg", "depth", "normals", "edge")  # synthetic: every pixel labelled -> equal n_valid per image


def _cfg(tmp_path):
    recipe = load_recipe("smoke", [
        "iterations=4", "batch_size=2", "checkpoint_every=100", "num_workers=0",
        f"datasets.synthetic.cache_dir={tmp_path / 'cache'}",
        "datasets.synthetic.n_train=6", "datasets.synthetic.n_val=3",
        "datasets.synthetic.height=32", "datasets.synthetic.width=48",
        "eval.edge_thresholds=3", "eval.edge_workers=1",
    ])
    return RunConfig("_test_nobn", "synthetic", TASKS, "resnet18", 0, recipe)


def _train_worker(rank, world, port, tmp, run_dir):
    _init(rank, world, port)
    rec = engine.run(_cfg(tmp), run_dir=__import__("pathlib").Path(run_dir))
    if rank == 0:
        with open(os.path.join(run_dir, "rec.json"), "w") as f:
            json.dump({"distributed": rec["distributed"], "metrics": rec["metrics"]}, f)
    dist.destroy_process_group()


def test_two_processes_batch_1_train_like_one_process_batch_2(tmp_path):
    one = tmp_path / "one"
    engine.run(_cfg(tmp_path), one)
    two = tmp_path / "two"
    mp.spawn(_train_worker, args=(2, free_port(), tmp_path, str(two)), nprocs=2)
    w1 = torch.load(one / "checkpoints" / "last.pt", weights_only=False)["model"]
    w2 = torch.load(two / "checkpoints" / "last.pt", weights_only=False)["model"]
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-5, atol=1e-6)
    rec = json.loads((two / "rec.json").read_text())
    assert rec["distributed"]["world_size"] == 2 and rec["distributed"]["per_device_batch"] == 1
    assert len(rec["distributed"]["device_names"]) == 2


def test_sync_bn_conversion_and_cpu_refusal():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    converted = to_sync_bn(model)
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules()) == 2
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())
    with pytest.raises(ValueError, match="must divide"):
        per_device_batch(8, 3)
    assert per_device_batch(8, 4) == 2
    assert prepare_model(model, torch.device("cpu"), sync_bn=True, find_unused=False) is model  # one process


def _sync_bn_cpu_worker(rank, world, port, out):
    _init(rank, world, port)
    try:
        prepare_model(nn.BatchNorm2d(2), torch.device("cpu"), sync_bn=True, find_unused=False)
    except ValueError as e:
        if rank == 0:
            open(out, "w").write(str(e))
    dist.destroy_process_group()


def test_sync_bn_on_cpu_is_a_clear_error(tmp_path):
    out = tmp_path / "err.txt"
    mp.spawn(_sync_bn_cpu_worker, args=(2, free_port(), str(out)), nprocs=2)
    assert "sync_bn needs CUDA" in out.read_text()


def test_cli_devices_2_runs_one_record_through_the_local_executor(tmp_path, tiny_overrides):
    from mtbench.cli import main
    from mtbench.records import read_record

    argv = ["--methods", "single", "--tasks", "semseg", "--devices", "2", "--results", str(tmp_path)]
    for o in tiny_overrides:
        argv += ["--set", o]
    assert main(argv) == 0
    (path,) = (tmp_path / "runs").glob("*/record.json")
    rec = read_record(path)
    assert rec["status"] == "done" and rec["attempt"] == 1
    assert rec["distributed"]["world_size"] == 2 and rec["distributed"]["per_device_batch"] == 1
    from mtbench import threads  # each process used its share of this one's CPU budget, not the whole machine

    assert rec["threads"]["cpu_budget"] == threads.split(threads.cpu_budget(), 2) == rec["environment"]["threads"]
    assert main(argv) == 0  # the same command again: done, nothing re-run
    assert read_record(path)["finished_at"] == rec["finished_at"]
