"""End-to-end engine behaviour on tiny synthetic runs: records, resume after a crash."""
import pytest
import torch

from mtbench import engine
from mtbench.config import RunConfig

NYUD_TASKS = ("semseg", "depth", "normals", "edge")


class Crash(RuntimeError):
    pass


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)["model"]


def test_resume_after_crash_gives_the_same_final_weights(tmp_path, tiny_recipe):
    cfg = RunConfig("baseline", "synthetic", NYUD_TASKS, "resnet18", 0, tiny_recipe)
    dir_a = tmp_path / "a" / "runs" / cfg.run_id
    rec_a = engine.run(cfg, dir_a)

    def crash_at_5(it, save):  # checkpoint_every=2: the last checkpoint before the crash is at 4
        if it == 5:
            raise Crash("simulated crash")

    dir_b = tmp_path / "b" / "runs" / cfg.run_id
    with pytest.raises(Crash):
        engine.run(cfg, dir_b, on_iteration=crash_at_5)
    rec_b = engine.run(cfg, dir_b)
    assert rec_b["resumed_from"] == 4 and rec_a["resumed_from"] == 0
    wa, wb = _weights(dir_a), _weights(dir_b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert rec_a["metrics"] == rec_b["metrics"]


def test_preemption_checkpoint_from_the_hook_resumes_there(tmp_path, tiny_recipe):
    cfg = RunConfig("baseline", "synthetic", ("semseg", "depth"), "resnet18", 1, tiny_recipe)
    run_dir = tmp_path / "runs" / cfg.run_id

    def preempt_at_3(it, save):  # what a SIGUSR1 handler does: save now, then stop
        if it == 3:
            save()
            raise Crash("preempted")

    with pytest.raises(Crash):
        engine.run(cfg, run_dir, on_iteration=preempt_at_3)
    assert engine.run(cfg, run_dir)["resumed_from"] == 3


def test_record_contents(tmp_path, tiny_recipe):
    cfg = RunConfig("baseline", "synthetic", NYUD_TASKS, "resnet18", 0, tiny_recipe)
    rec = engine.run(cfg, tmp_path / "runs" / cfg.run_id)
    assert rec["status"] == "done" and rec["run_id"] == cfg.run_id
    assert set(rec["metrics"]) == set(NYUD_TASKS)
    assert {"mIoU", "loss"} <= set(rec["metrics"]["semseg"])
    assert {"odsF", "oisF", "AP", "loss"} <= set(rec["metrics"]["edge"])
    assert set(rec["trivial"]) == set(NYUD_TASKS)
    assert rec["params"]["total"] == rec["params"]["backbone"] + rec["params"]["head"] > 0
    assert rec["flops"]["gflops"] > 0 and rec["backbone_info"]["weights_source"] == "random init"
    assert rec["environment"]["torch"] == torch.__version__
    assert rec["threads"]["torch_threads"] == rec["environment"]["threads"] >= 1
    # edge predictions saved as PNG at native size for re-scoring
    pngs = sorted((tmp_path / "runs" / cfg.run_id / "predictions" / "edge").glob("*.png"))
    assert len(pngs) == rec["dataset_info"]["n_val"]
