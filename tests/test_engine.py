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
    # the qualitative images: the first K val ids, input + target + prediction per task, lossless
    import numpy as np
    from PIL import Image

    from mtbench import prediction_io, qualitative
    from mtbench.data.synthetic import build as build_synthetic

    qdir = tmp_path / "runs" / cfg.run_id / "qualitative"
    ids = sorted(p.name for p in qdir.iterdir())
    assert ids == [f"val_{i:05d}" for i in range(min(qualitative.K, rec["dataset_info"]["n_val"]))]
    val = build_synthetic("val", NYUD_TASKS, cfg.data_cfg(tmp_path / "cache"))
    for i, image_id in enumerate(ids):
        d = qdir / image_id
        assert sorted(p.name for p in d.iterdir()) == sorted(
            ["image.png", "semseg.png", "semseg.gt.png", "depth.npy", "depth.gt.npy", "normals.npy",
             "normals.gt.npy", "edge.png", "edge.gt.png"])
        # the input back to the rendered scene's 8-bit RGB (normalise then de-normalise: within one level)
        rgb = np.asarray(Image.open(d / "image.png")).astype(int)
        assert np.abs(rgb - val.arrays["image"][i].astype(int)).max() <= 1
        assert np.array_equal(prediction_io.read(d / "semseg.gt.png", "labels", target=True), val.arrays["semseg"][i])
        assert np.array_equal(np.load(d / "depth.gt.npy"), val.arrays["depth"][i].astype(np.float32))
        normals = np.load(d / "normals.npy")
        assert normals.shape == (3, 32, 48) and np.allclose(np.linalg.norm(normals, axis=0), 1, atol=1e-4)
        # the edge picture is byte for byte the PNG the boundary evaluation reads
        saved = tmp_path / "runs" / cfg.run_id / "predictions" / "edge" / f"{image_id}.png"
        assert np.array_equal(np.asarray(Image.open(d / "edge.png")), np.asarray(Image.open(saved)))
