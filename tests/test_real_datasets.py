"""NYUD-v2 / PASCAL-Context loaders on tiny folders in the real formats, and the shared pipeline."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_real as F  # noqa: E402

from mtbench.data import check, nyud, pascal, pascal_parts, transforms as T  # noqa: E402
from mtbench.data.base import IGNORE  # noqa: E402
from mtbench.data.loader import IterationBatchSampler, collate  # noqa: E402
from mtbench.evaluation import native_crop  # noqa: E402
from mtbench.registry import DATASETS  # noqa: E402

PAD = (48, 64)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    return {"nyud": F.write_nyud(base), "nyud_mt": F.write_nyud(base, "NYUD_MT"), "pascal": F.write_pascal(base)}


def _native(sample, key):
    return native_crop(sample[key], sample["meta"]).numpy()


# ------------------------------------------------------------------------------- NYUD
def test_nyud_every_task_through_the_loader(data):
    ds = DATASETS.get("nyud")("val", nyud.TASKS, {"data_dir": str(data["nyud"].parent), "pad_size": PAD})
    assert ds.layout.variant == "NYUDv2" and len(ds) == len(F.NYUD_VAL) and ds.edge_eval_ids is None
    s = ds[0]
    root, image_id = data["nyud"], F.NYUD_VAL[0]
    assert s["meta"] == {"id": image_id, "size": (40, 56), "offset": (4, 4)}  # centred padding
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, *PAD)
    raw = np.asarray(nyud.read_semseg(root / "segmentation" / f"{image_id}.png")).astype(int)
    np.testing.assert_array_equal(_native(s, "semseg"), np.where(raw == 0, IGNORE, raw - 1))
    assert s["semseg"].dtype == torch.int64 and set(np.unique(_native(s, "semseg"))) <= set(range(40)) | {IGNORE}
    np.testing.assert_array_equal(_native(s, "depth"), np.load(root / "depth" / f"{image_id}.npy"))
    n = _native(s, "normals")
    invalid = (n == IGNORE).all(0)
    assert invalid[-5:, -7:].all() and invalid.sum() == 35  # the zero-vector patch (PNG 128,128,128)
    np.testing.assert_allclose(np.linalg.norm(n[:, ~invalid], axis=0), 1.0, atol=1e-5)
    assert set(np.unique(_native(s, "edge"))) <= {0.0, 1.0} and _native(s, "edge").any()
    # outside the native window: the pad values of each task
    assert (s["semseg"][:4] == IGNORE).all() and (s["edge"][:4] == IGNORE).all()
    assert (s["depth"][:4] == 0).all() and (s["normals"][:, :4] == IGNORE).all() and (s["image"][:, :4] == 0).all()


def test_nyud_mt_variant_is_detected(data):
    ds = DATASETS.get("nyud")("train", ("depth", "normals", "edge"), {"data_dir": str(data["nyud_mt"])})
    assert ds.layout.variant == "NYUD_MT" and ds.pad_size == (480, 640) and ds.info.image_size == (480, 640)
    s = DATASETS.get("nyud")("val", nyud.TASKS, {"data_dir": str(data["nyud_mt"]), "pad_size": PAD})[1]
    assert set(s) == {"image", "semseg", "depth", "normals", "edge", "meta"}
    assert (_native(s, "normals")[:, -5:, -7:] == IGNORE).all()  # true zero vectors in the .npy
    assert set(np.unique(_native(s, "edge"))) == {0.0, 1.0}


def test_static_info_needs_no_files():
    info = DATASETS.get("nyud").static_info(nyud.TASKS, {"data_dir": "/nonexistent"})
    assert info.image_size == (448, 576) and info.num_classes["semseg"] == 40 and info.edge_max_dist == 0.011
    info = DATASETS.get("pascal").static_info(pascal.TASKS, {})
    assert info.image_size == (512, 512) and info.num_classes == {"semseg": 21, "human_parts": 7}
    assert DATASETS.get("pascal").default_tasks == pascal.TASKS and info.edge_max_dist == 0.0075


@pytest.mark.parametrize("name,needles", [("nyud", ("gt_sets/train.txt", "NYUD_MT.tgz", "NYUDv2")),
                                          ("pascal", ("ImageSets/Context", "PASCAL_MT.tgz", "LabelMap"))])
def test_bad_data_dir_shows_the_layout(tmp_path, name, needles):
    with pytest.raises(FileNotFoundError) as err:
        DATASETS.get(name)("train", DATASETS.get(name).default_tasks, {"data_dir": str(tmp_path / "nope")})
    assert all(n in str(err.value) for n in needles)
    with pytest.raises(ValueError, match="--data-dir"):
        DATASETS.get(name)("train", DATASETS.get(name).default_tasks, {})


def test_edge_eval_ids(data, tmp_path):
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(F.NYUD_VAL[1] + "\n")
    cfg = {"data_dir": str(data["nyud"]), "pad_size": PAD}
    assert DATASETS.get("nyud")("val", nyud.TASKS, {**cfg, "edge_eval_ids": str(ids_file)}).edge_eval_ids == [F.NYUD_VAL[1]]
    assert DATASETS.get("nyud")("train", nyud.TASKS, {**cfg, "edge_eval_ids": str(ids_file)}).edge_eval_ids is None
    assert len(nyud.BUILTIN_EDGE_IDS["seism_test_new"]) == 654
    with pytest.raises(ValueError, match="not in the split"):  # the tiny val split lacks most of them
        DATASETS.get("nyud")("val", nyud.TASKS, {**cfg, "edge_eval_ids": "seism_test_new"})
    with pytest.raises(ValueError, match="not published"):
        DATASETS.get("pascal")("val", pascal.TASKS, {"data_dir": str(data["pascal"]), "edge_eval_ids": "seism_test_new"})


# ------------------------------------------------------------------------------- PASCAL
def test_pascal_every_task_through_the_loader(data):
    ds = DATASETS.get("pascal")("val", pascal.TASKS, {"data_dir": str(data["pascal"].parent)})
    root = data["pascal"]
    for i, image_id in enumerate(F.PASCAL_VAL):
        s = ds[i]
        h, w = s["meta"]["size"]
        assert s["meta"]["offset"] == ((512 - h) // 2, (512 - w) // 2)
        folder = "VOC12" if (root / "semseg/VOC12" / f"{image_id}.png").is_file() else "pascal-context"
        np.testing.assert_array_equal(_native(s, "semseg"), pascal.read_semseg(root / "semseg" / folder / f"{image_id}.png"))
        sal = np.asarray(pascal.Image.open(root / "sal_distill" / f"{image_id}.png"))
        np.testing.assert_array_equal(_native(s, "sal"), (sal > 127).astype(np.int64))
        labels = pascal.read_label_map(root / "pascal-context/trainval" / f"{image_id}.mat")
        n_invalid = (_native(s, "normals") == IGNORE).all(0)
        np.testing.assert_array_equal(n_invalid, labels == F.SKY)  # sky is no NYU class; wall/floor/person are
        edge = _native(s, "edge")
        assert set(np.unique(edge)) == {0.0, 1.0} and edge[labels == labels[0, 0]].sum() < edge.sum()
        parts = _native(s, "human_parts")
        if i % 3 == 0:  # people with parts: later parts overwrite, background inside a person stays 0
            np.testing.assert_array_equal(parts, F.expected_parts((h, w)))
        else:  # a dog only / a person without parts: ignored, as the references do
            assert (s["human_parts"] == IGNORE).all()
    assert sorted({ds[0]["meta"]["size"], ds[1]["meta"]["size"]}) == [(40, 56), (48, 40)]
    assert pascal_parts.PART_NAMES == ("background", "head", "torso", "uarm", "larm", "uleg", "lleg")


def test_label_edges_are_thin_discontinuities():
    labels = np.full((20, 30), 7)
    labels[:, 12:] = 9
    e = pascal.label_edges(labels)
    assert e[:, :10].sum() == 0 and e[:, 14:].sum() == 0  # only at the discontinuity
    assert (e.sum(1) <= 1).all() and e.sum() >= 18  # 1 px wide after thinning (which may drop an end)


# ------------------------------------------------------------------------------- transforms
def _sample(shape=(40, 40), seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(0, 255, shape + (3,)).astype(np.float32),
            "semseg": F._blocks(rng, shape, np.array([3, 7, IGNORE], np.uint8), block=5),
            "human_parts": F._blocks(rng, shape, np.array([0, 2, 5], np.uint8), block=5),
            "depth": np.full(shape, 2.0, np.float32),
            "normals": F._unit_normals(rng, shape),
            "edge": F._blocks(rng, shape, np.array([0, 1], np.uint8), block=3)}


@pytest.mark.parametrize("scale", [0.5, 1.37, 2.0])
def test_depth_divided_by_scale_and_labels_nearest(scale):
    aug = T.Augment(scale_range=(scale, scale), photometric=False)
    out, size, _ = T.prepare(_sample(), (96, 96), seed=3, aug=aug)
    assert size == T.scaled_size((40, 40), scale)
    valid = out["depth"] > 0
    np.testing.assert_allclose(out["depth"][valid], 2.0 / scale, rtol=1e-6)
    assert set(np.unique(out["semseg"])) <= {3, 7, IGNORE}
    assert set(np.unique(out["human_parts"])) <= {0, 2, 5, IGNORE} and set(np.unique(out["edge"])) <= {0, 1, IGNORE}
    n = out["normals"][(out["normals"] != IGNORE).all(-1)]
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)  # nearest keeps unit vectors


def test_nearest_and_bilinear_follow_opencv_rules():
    x = np.arange(10)[:, None] * np.ones((1, 3))
    assert T.nearest_index(10, 4).tolist() == [0, 2, 5, 7]  # floor(i * 10/4)
    i0, i1, w = T.linear_taps(4, 8)  # half-pixel centres, clamped
    assert i0.tolist() == [0, 0, 0, 1, 1, 2, 2, 3] and np.allclose(w, [0, .25, .75, .25, .75, .25, .75, 0])
    big = T.resize_bilinear(np.random.default_rng(0).random((9, 11, 3)).astype(np.float32), (20, 23))
    part = T.resize_bilinear(np.random.default_rng(0).random((9, 11, 3)).astype(np.float32), (20, 23), (5, 7, 6, 9))
    np.testing.assert_array_equal(part, big[5:11, 7:16])
    assert T.resize_nearest(x[:, :1].astype(np.uint8), (5, 1))[:, 0].tolist() == [0, 2, 4, 6, 8]


def test_flip_negates_normals_x():
    s = _sample()
    aug = T.Augment(scale_range=(1.0, 1.0), flip_prob=1.0, photometric=False)
    out, _, _ = T.prepare({k: v.copy() for k, v in s.items()}, (40, 40), seed=0, aug=aug)
    np.testing.assert_allclose(out["normals"][..., 0], -s["normals"][:, ::-1, 0])
    np.testing.assert_allclose(out["normals"][..., 1:], s["normals"][:, ::-1, 1:])
    np.testing.assert_array_equal(out["semseg"], s["semseg"][:, ::-1])
    np.testing.assert_allclose(out["image"], T.normalize(s["image"][:, ::-1]), rtol=1e-6)


def test_padding_values_per_task():
    s = _sample((10, 13))
    s["sal"] = np.ones((10, 13), np.uint8)
    out, size, (top, left) = T.prepare(s, (16, 20), seed=None, aug=None)
    assert size == (10, 13) and (top, left) == (3, 3)
    outside = np.ones((16, 20), bool)
    outside[3:13, 3:16] = False
    assert (out["image"][outside] == 0).all()  # 0 after normalisation: the ImageNet mean colour
    for key in ("semseg", "human_parts", "edge", "sal"):
        assert (out[key][outside] == IGNORE).all(), key
    assert (out["depth"][outside] == 0).all() and (out["normals"][outside] == IGNORE).all()
    with pytest.raises(ValueError, match="larger than pad_size"):
        T.prepare(_sample((30, 30)), (16, 20), seed=None, aug=None)


def test_cat_max_ratio_rejects_dominated_crops():
    seg = np.ones((20, 40), np.uint8)
    seg[:, 30:] = 2  # class 1 holds 75% of the image: many 20x16 crops are all class 1
    crop = (20, 16)

    def seg_crop(t, l, h, w):
        return seg[t:t + h, l:l + w]

    balanced = []
    for seed in range(200):
        top, left, h, w = T.choose_crop(np.random.default_rng(seed), seg.shape, crop, seg_crop, 0.75, 10)
        # replay mmseg's loop: the first of up to 10 checked candidates that passes, else the 11th draw
        rng = np.random.default_rng(seed)
        cands = [T.draw_crop(rng, seg.shape, crop) for _ in range(11)]
        ok = [c for c in cands[:10] if T.class_balanced(seg_crop(*c, *crop), 0.75)]
        assert (top, left) == (ok[0] if ok else cands[10])
        balanced.append(T.class_balanced(seg_crop(top, left, h, w), 0.75))
    unchecked = [T.class_balanced(seg_crop(*T.draw_crop(np.random.default_rng(s), seg.shape, crop), *crop), 0.75)
                 for s in range(200)]
    assert np.mean(balanced) > 0.95 > 0.5 > np.mean(unchecked)


def test_same_sample_seed_same_sample(data):
    ds = DATASETS.get("pascal")("train", pascal.TASKS, {"data_dir": str(data["pascal"]), "pad_size": PAD})
    a, b, c = ds[(1, 1234)], ds[(1, 1234)], ds[(1, 99)]
    for key in ("image", "semseg", "human_parts", "sal", "normals", "edge"):
        assert torch.equal(a[key], b[key]), key
    assert a["meta"] == b["meta"] and not torch.equal(a["image"], c["image"])


def test_photometric_distortion_and_hsv():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    back = T.hsv_to_rgb(T.rgb_to_hsv(img))
    err = np.abs(back.astype(int) - img)
    assert err.max() <= 5 and err.mean() < 1  # 8-bit HSV quantisation (hue in 2-degree steps)
    out = T.photometric_distortion(img.astype(np.float32), np.random.default_rng(5), T.Augment())
    again = T.photometric_distortion(img.astype(np.float32), np.random.default_rng(5), T.Augment())
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255 and np.array_equal(out, again)


def test_batches_through_the_training_sampler(data):
    ds = DATASETS.get("nyud")("train", nyud.TASKS, {"data_dir": str(data["nyud"]), "pad_size": PAD})
    batch = collate([ds[k] for k in next(iter(IterationBatchSampler(len(ds), 2, seed=0, start=0, total=1)))])
    assert batch["image"].shape == (2, 3, *PAD) and batch["normals"].shape == (2, 3, *PAD) and len(batch["meta"]) == 2


# ------------------------------------------------------------------------------- data check
def _check_args(name, root, expect):
    return argparse.Namespace(dataset=name, data_dir=str(root), splits="train,val", expect=expect, limit=None, workers=1)


def test_data_check_passes_a_good_folder(data, capsys):
    assert check.run(_check_args("nyud", data["nyud"], "train=3,val=2")) == 0
    assert check.run(_check_args("pascal", data["pascal"], "train=3,val=3")) == 0
    assert "no problems" in capsys.readouterr().out


def test_data_check_names_every_bad_file(tmp_path, capsys):
    root = F.write_pascal(tmp_path)
    (root / "JPEGImages" / f"{F.PASCAL_TRAIN[1]}.jpg").write_bytes(b"not a jpeg at all")
    bad_seg = next((root / "semseg").glob(f"*/{F.PASCAL_VAL[0]}.png"))
    bad_seg.unlink()
    (root / "ImageSets/Context/val.txt").write_text("\n".join(F.PASCAL_VAL[:2]) + "\n")
    assert check.run(_check_args("pascal", root, "train=3,val=3")) == 1
    out = capsys.readouterr().out
    assert f"{F.PASCAL_TRAIN[1]}.jpg" in out and f"{F.PASCAL_VAL[0]}.png: missing" in out
    assert "val.txt: 2 ids, expected 3" in out
    root = F.write_nyud(tmp_path / "n")
    np.save(root / "depth" / f"{F.NYUD_TRAIN[0]}.npy", np.full((3, 3), np.nan, np.float32))
    assert check.run(_check_args("nyud", root, None)) == 1
    out = capsys.readouterr().out
    assert f"{F.NYUD_TRAIN[0]}.npy" in out and "train.txt: 3 ids, expected 795" in out
