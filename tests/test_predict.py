"""``bench.py predict``: a finished run's model (record + checkpoints/final.pt) on images of any size; outputs
as the evaluators read them and as pictures. Checked against the model applied by hand."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mtbench import checkpoint, prediction_io
from mtbench.cli import main
from mtbench.config import RunConfig
from mtbench.data.base import IMAGENET_MEAN, IMAGENET_STD
from mtbench.data.synthetic import static_info
from mtbench.engine import build_model
from mtbench.records import write_record

TASKS = ("semseg", "depth", "normals", "edge")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run directory as the engine leaves it, with a randomly initialised model as its final weights."""
    from mtbench.config import load_recipe
    from tests.conftest import TINY

    torch.manual_seed(0)
    cfg = RunConfig("baseline", "synthetic", TASKS, "resnet18", 0, load_recipe("smoke", TINY))
    info = static_info(TASKS, cfg.dataset_cfg)
    model, _, _ = build_model(cfg, info)
    model.eval()
    run_dir = tmp_path_factory.mktemp("results") / "runs" / cfg.run_id
    checkpoint.save_final(run_dir / "checkpoints", model, 6)
    write_record(run_dir, {"run_id": cfg.run_id, "status": "done", "config": cfg.to_dict()})
    return run_dir, model, info


def _logits(model, rgb):
    x = (torch.from_numpy(rgb).float().permute(2, 0, 1) / 255 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) \
        / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    with torch.no_grad():
        return model(x[None])["final"]


def test_predict_folder(finished_run, tmp_path, capsys):
    run_dir, model, info = finished_run
    H, W = info.image_size
    rng = np.random.default_rng(0)
    same = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (H - 6, W - 10, 3), dtype=np.uint8)
    large = rng.integers(0, 256, (100, 90, 3), dtype=np.uint8)
    images = tmp_path / "images"
    images.mkdir()
    for name, a in [("a_same", same), ("b_small", small), ("c_large", large)]:
        Image.fromarray(a).save(images / f"{name}.png")
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict", str(run_dir), "--images", str(images), "--out", str(out), "--device", "cpu"]) == 0
    assert "wrote 12 prediction(s)" in capsys.readouterr().out

    # the model's input size: no padding, no resizing: exactly the model applied by hand
    lg = _logits(model, same)
    sem = prediction_io.read(out / "semseg" / "a_same.png", "labels")
    assert np.array_equal(sem, lg["semseg"].argmax(1)[0].numpy())
    assert np.allclose(np.load(out / "depth" / "a_same.npy"), lg["depth"][0, 0].numpy(), atol=1e-5)
    edge = np.asarray(Image.open(out / "edge" / "a_same.png"))
    assert np.array_equal(edge, (torch.sigmoid(lg["edge"][0, 0]).numpy() * np.float32(255)).astype(np.uint8))
    # smaller: padded, centred, with 0 after normalisation, then cropped back
    top, left = 3, 5
    x = np.zeros((H, W, 3), np.float32)
    x[top:top + H - 6, left:left + W - 10] = small
    mean = np.array(IMAGENET_MEAN, np.float32) * 255
    x[:top], x[top + H - 6:], x[:, :left], x[:, left + W - 10:] = mean, mean, mean, mean  # normalises to 0
    lg = _logits(model, x)
    n = np.load(out / "normals" / "b_small.npy")
    ref = torch.nn.functional.normalize(lg["normals"], dim=1)[0, :, top:top + H - 6, left:left + W - 10].numpy()
    assert n.shape == (3, H - 6, W - 10) and np.allclose(n, ref, atol=1e-5)
    # larger: every output and picture at the image's own size
    assert prediction_io.read(out / "semseg" / "c_large.png", "labels").shape == (100, 90)
    assert np.load(out / "depth" / "c_large.npy").shape == (100, 90)
    assert np.load(out / "normals" / "c_large.npy").shape == (3, 100, 90)
    for t in TASKS:
        pic = np.asarray(Image.open(out / "pictures" / t / "c_large.png"))
        assert pic.shape == (100, 90, 3) and pic.dtype == np.uint8


def test_predict_refuses_clearly(finished_run, tmp_path, capsys):
    run_dir, _, _ = finished_run
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(run_dir), "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no image files" in capsys.readouterr().out
    failed = tmp_path / "failed_run"
    write_record(failed, {"run_id": "x", "status": "failed",
                          "config": json.loads((run_dir / "record.json").read_text())["config"]})
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "empty" / "a.png")
    assert main(["predict", str(failed), "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "did not finish" in capsys.readouterr().out
    assert main(["predict", str(tmp_path), "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no record.json" in capsys.readouterr().out
