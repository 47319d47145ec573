"""nyuv2_mtan / cityscapes_mtan on folders in the exact MTAN .npy format: targets, augmentation, data check."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_real as F  # noqa: E402

from mtbench.data import check, cityscapes_mtan, mtan_npy, nyuv2_mtan  # noqa: E402
from mtbench.data.base import IGNORE  # noqa: E402
from mtbench.registry import DATASETS  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("mtan")
    return {"nyuv2": F.write_mtan(base / "n", "nyuv2"), "cityscapes": F.write_mtan(base / "c", "cityscapes")}


def test_nyuv2_mtan_targets_are_the_files(data):
    root = data["nyuv2"]
    ds = DATASETS.get("nyuv2_mtan")("val", nyuv2_mtan.TASKS, {"data_dir": str(root.parent)})
    assert len(ds) == 2 and ds.info.image_size == (288, 384) and ds.info.num_classes == {"semseg_libmtl": 13}
    assert ds.info.delta_m == "all"
    s = ds[1]
    assert s["meta"] == {"id": "val/1", "size": (288, 384), "offset": (0, 0)}
    image = np.load(root / "val/image/1.npy")
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 288, 384)
    np.testing.assert_allclose(s["image"].numpy(), image.transpose(2, 0, 1), rtol=0, atol=1e-7)  # not normalised
    label = np.load(root / "val/label/1.npy")
    assert (label == -1).any()
    np.testing.assert_array_equal(s["semseg_libmtl"].numpy(), np.where(label == -1, IGNORE, label))
    assert s["semseg_libmtl"].dtype == torch.int64
    np.testing.assert_allclose(s["depth_libmtl"].numpy(), np.load(root / "val/depth/1.npy")[..., 0], rtol=1e-6)
    assert (s["depth_libmtl"][:6, :10] == 0).all()
    normals = np.load(root / "val/normal/1.npy").transpose(2, 0, 1)
    np.testing.assert_allclose(s["normals_libmtl"].numpy(), normals, rtol=1e-6)
    assert (s["normals_libmtl"][:, -5:, -7:] == 0).all()  # raw: the task masks zero-sum vectors itself


def test_cityscapes_mtan_label_7_19_and_libmtl_folder(data, tmp_path):
    root = data["cityscapes"]
    ds = DATASETS.get("cityscapes_mtan")("train", cityscapes_mtan.TASKS, {"data_dir": str(root)})
    assert len(ds) == 3 and ds.info.image_size == (128, 256) and ds.info.num_classes == {"semseg_libmtl": 7}
    s = ds[0]
    assert set(s) == {"image", "semseg_libmtl", "depth_libmtl", "meta"}
    label = np.load(root / "train/label_7/0.npy")
    np.testing.assert_array_equal(s["semseg_libmtl"].numpy(), np.where(label == -1, IGNORE, label))
    s19 = DATASETS.get("cityscapes_mtan")("train", cityscapes_mtan.TASKS, {"data_dir": str(root), "classes": 19})[0]
    label = np.load(root / "train/label_19/0.npy")
    np.testing.assert_array_equal(s19["semseg_libmtl"].numpy(), np.where(label == -1, IGNORE, label))
    # LibMTL's copy names the 7-class folder label/
    lib = F.write_mtan(tmp_path, "cityscapes", n_train=1, n_val=1)
    for split in ("train", "val"):
        (lib / split / "label_7").rename(lib / split / "label")
    ds = DATASETS.get("cityscapes_mtan")("val", cityscapes_mtan.TASKS, {"data_dir": str(lib)})
    assert ds.layout.folders["semseg"] == "label"
    with pytest.raises(ValueError, match="7 or 19"):
        DATASETS.get("cityscapes_mtan")("val", cityscapes_mtan.TASKS, {"data_dir": str(lib), "classes": 8})


def test_scale_crop_flip_follows_the_release():
    """RandomScaleCrop (lorenmt/mtan#34) + flip: draws in the release's order from Python's ``random``."""
    h, w = 12, 16
    img = torch.arange(3 * h * w, dtype=torch.float32).view(3, h, w)
    depth = torch.full((h, w), 6.0)
    label = torch.arange(h * w, dtype=torch.float32).view(h, w)
    normals = torch.zeros(3, h, w)
    normals[0] = 0.6
    normals[2] = 0.8
    arrays = {"image": img, "semseg": label, "depth": depth, "normals": normals}
    seen = set()
    for seed in range(40):
        import random

        rng = random.Random(seed)
        sc = mtan_npy.SCALES[rng.randint(0, 2)]
        ch, cw = int(h / sc), int(w / sc)
        i, j = rng.randint(0, h - ch), rng.randint(0, w - cw)
        flip = rng.random() < 0.5
        out = mtan_npy.scale_crop_flip({k: v.clone() for k, v in arrays.items()}, seed)
        seen.add((sc, flip))
        assert torch.allclose(out["depth"], torch.full((h, w), 6.0 / sc))  # depth ÷ scale
        lab = out["semseg"].flip(-1) if flip else out["semseg"]
        crop = label[i:i + ch, j:j + cw]
        assert set(lab.unique().tolist()) <= set(crop.unique().tolist())  # nearest: only values of the crop
        assert lab[0, 0] == crop[0, 0] and lab[-1, -1] == crop[-1, -1]  # corners kept (nearest)
        im = out["image"].flip(-1) if flip else out["image"]
        assert torch.allclose(im[:, 0, 0], img[:, i, j]) and torch.allclose(im[:, -1, -1], img[:, i + ch - 1, j + cw - 1])
        assert torch.allclose(out["normals"][0], torch.full((h, w), -0.6 if flip else 0.6))  # x negated on flip
    assert {s for s, _ in seen} == set(mtan_npy.SCALES) and {f for _, f in seen} == {True, False}


def test_training_split_augments_only_when_asked(data):
    cfg = {"data_dir": str(data["nyuv2"]), "augment": True}
    train = DATASETS.get("nyuv2_mtan")("train", nyuv2_mtan.TASKS, cfg)
    a, b = train[(0, 7)], train[(0, 7)]
    assert all(torch.equal(a[k], b[k]) for k in nyuv2_mtan.TASKS)  # a pure function of the sample seed
    plain = DATASETS.get("nyuv2_mtan")("train", nyuv2_mtan.TASKS, {"data_dir": str(data["nyuv2"])})
    assert torch.equal(plain[(0, 7)]["image"], plain[0]["image"])
    assert any(not torch.equal(train[(0, s)]["image"], plain[0]["image"]) for s in range(4))


def test_layout_errors_and_data_check(data, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="train/label/<i>.npy"):
        DATASETS.get("nyuv2_mtan")("train", nyuv2_mtan.TASKS, {"data_dir": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match="--data-dir"):
        DATASETS.get("cityscapes_mtan")("train", cityscapes_mtan.TASKS, {})
    args = argparse.Namespace(dataset="nyuv2_mtan", data_dir=str(data["nyuv2"]), splits="train,val",
                              expect="train=3,val=2", limit=None, workers=1)
    assert check.run(args) == 0
    bad = F.write_mtan(tmp_path, "nyuv2", n_train=3, n_val=1)
    np.save(bad / "train/label/1.npy", np.full((288, 384), 13.0))  # class 13 does not exist
    (bad / "train/depth/2.npy").unlink()
    args.data_dir, args.expect = str(bad), "train=3,val=1"
    assert check.run(args) == 1
    out = capsys.readouterr().out
    assert "label/1.npy" in out and "0..12" in out and "depth/2.npy" in out
    problems, notes = check.quick_check("nyuv2_mtan", {"data_dir": str(bad)}, nyuv2_mtan.TASKS)
    assert any("depth/2.npy: missing" in p for p in problems) and any("795" in n for n in notes)
    problems, _ = check.quick_check("cityscapes_mtan", {"data_dir": str(data["cityscapes"])}, cityscapes_mtan.TASKS)
    assert problems == []
