"""The synthetic renderer's labels must be mutually consistent, since benchmarks trust them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtbench.data import scenes, synthetic
from mtbench.data.base import TASK_SETS
from mtbench.registry import DATASETS

H, W = 72, 96
SEEDS = range(12)


@pytest.fixture(scope="module")
def renders():
    return [scenes.render_scene(s, H, W) for s in SEEDS]


def test_deterministic():
    a, b, c = (scenes.render_scene(s, H, W) for s in (7, 7, 8))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image"], c["image"])
    assert not np.array_equal(a["depth"], c["depth"])


def test_output_types(renders):
    r = renders[0]
    expected = {"image": (np.uint8, (H, W, 3)), "semseg": (np.uint8, (H, W)), "instance": (np.int16, (H, W)),
                "depth": (np.float32, (H, W)), "normals": (np.float32, (H, W, 3)), "edge": (np.uint8, (H, W)),
                "sal": (np.uint8, (H, W)), "human_parts": (np.uint8, (H, W))}
    for key, (dtype, shape) in expected.items():
        assert r[key].dtype == dtype and r[key].shape == shape, key


def _backprojected_normals(depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    fx, fy, cx, cy = intrinsics
    v, u = np.mgrid[: depth.shape[0], : depth.shape[1]] + 0.5
    pts = np.stack([(u - cx) / fx * depth, -(v - cy) / fy * depth, -depth], -1)
    du = pts[1:-1, 2:] - pts[1:-1, :-2]
    dv = pts[2:, 1:-1] - pts[:-2, 1:-1]
    n = np.cross(dv, du)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    facing = (n * pts[1:-1, 1:-1]).sum(-1, keepdims=True) > 0
    return np.where(facing, -n, n)


def _uniform_interior(inst: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """Interior pixels whose 3x3 neighbourhood lies on one instance with no edge."""
    ok = np.ones((inst.shape[0] - 2, inst.shape[1] - 2), bool)
    centre = inst[1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            win = (slice(dy, dy + inst.shape[0] - 2), slice(dx, dx + inst.shape[1] - 2))
            ok &= (inst[win] == centre) & (edge[win] == 0)
    return ok


def test_normals_match_depth(renders):
    for r in renders:
        est = _backprojected_normals(r["depth"].astype(np.float64), r["intrinsics"])
        mask = _uniform_interior(r["instance"], r["edge"])
        cos = (est * r["normals"][1:-1, 1:-1]).sum(-1)[mask]
        angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        assert mask.sum() > 0.3 * mask.size
        assert np.mean(angle < 2.0) >= 0.95, np.percentile(angle, [50, 95])


def test_normals_unit_and_facing_camera(renders):
    for r in renders:
        n = r["normals"]
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)
        assert np.all((n * _points(r)).sum(-1) < 1e-6)


def test_edges_follow_label_changes_and_are_thin(renders):
    n_edge = n_blocks = n_pairs = n_both = 0
    for r in renders:
        sem, inst, edge = r["semseg"], r["instance"], r["edge"].astype(bool)
        assert set(np.unique(edge)) <= {0, 1}
        change = np.zeros_like(edge)
        change[:, :-1] |= (sem[:, :-1] != sem[:, 1:]) | (inst[:, :-1] != inst[:, 1:])
        change[:-1, :] |= (sem[:-1, :] != sem[1:, :]) | (inst[:-1, :] != inst[1:, :])
        near = edge.copy()  # dilate edges by one pixel (4-neighbourhood)
        near[1:] |= edge[:-1]
        near[:-1] |= edge[1:]
        near[:, 1:] |= edge[:, :-1]
        near[:, :-1] |= edge[:, 1:]
        assert change.any() and np.all(near[change])
        assert edge.mean() < 0.12
        n_edge += edge.sum()
        # 2x2 all-edge blocks only where a sliver is one pixel wide and both its sides are marked.
        n_blocks += (edge[:-1, :-1] & edge[1:, :-1] & edge[:-1, 1:] & edge[1:, 1:]).sum()
        # One side only: few label-changing pairs have both pixels marked (a two-sided rule: all;
        # staircases on diagonal boundaries account for the rest).
        for a, b in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                     ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
            diff = (inst[a] != inst[b]) | (sem[a] != sem[b])
            n_pairs += diff.sum()
            n_both += (diff & edge[a] & edge[b]).sum()
    assert n_blocks <= 0.02 * n_edge, (n_blocks, n_edge)
    assert n_both <= 0.2 * n_pairs, (n_both, n_pairs)


def test_ranges_and_label_consistency(renders):
    classes, parts = set(), set()
    for r in renders:
        assert np.all(r["depth"] > 0) and np.all(np.isfinite(r["depth"]))
        obj = r["instance"] > 0
        np.testing.assert_array_equal(r["sal"], obj.astype(np.uint8))
        np.testing.assert_array_equal(r["human_parts"] == 0, r["sal"] == 0)
        assert r["semseg"].max() < len(scenes.CLASS_NAMES) and r["human_parts"].max() < len(scenes.PART_NAMES)
        assert 3 <= int(r["num_objects"]) <= 8 and obj.any()
        assert r["instance"].max() <= int(r["num_objects"])
        # Room surfaces carry room classes and objects carry object classes.
        room_ids = [scenes.CLASS_NAMES.index(c) for c in ("wall", "floor", "ceiling")]
        assert np.all(np.isin(r["semseg"][~obj], room_ids)) and not np.isin(r["semseg"][obj], room_ids).any()
        classes |= set(np.unique(r["semseg"]).tolist())
        parts |= set(np.unique(r["human_parts"]).tolist())
    assert len(scenes.CLASS_NAMES) >= 8 and len(classes) >= 8
    assert len(scenes.PART_NAMES) >= 4 and len(parts) >= 4


def _points(r) -> np.ndarray:
    fx, fy, cx, cy = r["intrinsics"]
    v, u = np.mgrid[:H, :W] + 0.5
    return np.stack([(u - cx) / fx, -(v - cy) / fy, -np.ones_like(u)], -1) * r["depth"][..., None]


def test_image_carries_shading(renders):
    """Lambertian: on one object, pixels turned away from the light get only ambient light, and
    lit pixels dim with the cosine to the light, so the image carries the geometry."""
    unlit_ratio, cos_ratio = [], []
    for r in renders:
        to_light = r["light"] - _points(r)
        cos = (r["normals"] * to_light).sum(-1) / np.linalg.norm(to_light, axis=-1)
        grey = ((r["image"].astype(float) / 255) ** 2.2).mean(-1)  # undo gamma
        for k in range(1, int(r["num_objects"]) + 1):
            obj = r["instance"] == k
            high, low, away = obj & (cos > 0.7), obj & (cos > 0.05) & (cos < 0.4), obj & (cos < 0)
            if high.sum() >= 10 and away.sum() >= 10:
                unlit_ratio.append(grey[away].mean() / grey[high].mean())
            if high.sum() >= 10 and low.sum() >= 10:
                cos_ratio.append(grey[low].mean() / grey[high].mean())
        assert r["image"].std() > 10
    assert len(unlit_ratio) >= 5 and np.median(unlit_ratio) < 0.6, unlit_ratio
    assert len(cos_ratio) >= 5 and np.median(cos_ratio) < 0.7, cos_ratio  # ~0.45; ~0.9 without cos


def _cfg(tmp_path, **kw):
    return {"n_train": 4, "n_val": 3, "height": 32, "width": 48, "seed": 5, "cache_dir": str(tmp_path), **kw}


def test_dataset_cache_and_contract(tmp_path, monkeypatch):
    # Not DATASETS.get: that imports every plugin, and this test should not depend on them.
    build = DATASETS.get("synthetic")
    assert build is synthetic.build
    ds = build("train", TASK_SETS["pascal"], _cfg(tmp_path))
    assert len(list(tmp_path.glob("synthetic/*/train.npz"))) == 1
    assert not list(tmp_path.glob("synthetic/*/*.tmp"))

    def boom(*a, **k):
        raise AssertionError("re-rendered despite a cache")

    monkeypatch.setattr(scenes, "render_scene", boom)
    again = build("train", ("semseg", "depth", "normals", "edge", "sal", "human_parts"), _cfg(tmp_path))
    assert len(ds) == len(again) == 4
    item, item2 = ds[2], again[2]
    assert torch.equal(item["image"], item2["image"]) and torch.equal(item["semseg"], item2["semseg"])
    assert set(item) == {"image", "meta", *TASK_SETS["pascal"]}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 32, 48)
    assert abs(float(item["image"].mean())) < 3
    assert item["semseg"].dtype == torch.int64 and item["semseg"].shape == (32, 48)
    assert item["human_parts"].dtype == torch.int64 and item["sal"].dtype == torch.int64
    assert item["normals"].dtype == torch.float32 and item["normals"].shape == (3, 32, 48)
    assert item["edge"].dtype == torch.float32 and item["edge"].shape == (32, 48)
    assert item2["depth"].dtype == torch.float32 and item2["depth"].shape == (32, 48)
    assert item["meta"] == {"id": "train_00002", "size": (32, 48)}
    info = ds.info
    assert info.name == "synthetic" and info.tasks == TASK_SETS["pascal"] and info.image_size == (32, 48)
    assert info.num_classes == {"semseg": len(scenes.CLASS_NAMES), "human_parts": len(scenes.PART_NAMES)}
    assert info.class_names["semseg"] == scenes.CLASS_NAMES and info.class_names["human_parts"] == scenes.PART_NAMES
    assert info.edge_max_dist == 0.0075 and info.loss_weight_profile == "pascal"


def test_dataset_nyud_info_and_split_disjoint(tmp_path):
    train = synthetic.build("train", TASK_SETS["nyud"], _cfg(tmp_path))
    val = synthetic.build("val", TASK_SETS["nyud"], _cfg(tmp_path))
    assert set(train[0]) == {"image", "meta", *TASK_SETS["nyud"]}
    assert train.info.edge_max_dist == 0.011 and train.info.loss_weight_profile == "nyud"
    assert len(val) == 3 and val[1]["meta"]["id"] == "val_00001"
    seeds = {synthetic.scene_seed(5, s, i) for s in ("train", "val") for i in range(100)}
    assert len(seeds) == 200
    assert not any(torch.equal(t["depth"], v["depth"]) for t in (train[i] for i in range(4)) for v in (val[j] for j in range(3)))
    other = synthetic.build("train", TASK_SETS["nyud"], _cfg(tmp_path, seed=6))
    assert not torch.equal(other[0]["depth"], train[0]["depth"])


def test_bad_split_or_task(tmp_path):
    with pytest.raises(ValueError, match="train, val"):
        synthetic.build("test", ("semseg",), _cfg(tmp_path))
    with pytest.raises(ValueError, match="semseg, depth, normals, edge, sal, human_parts"):
        synthetic.build("train", ("semseg", "flow"), _cfg(tmp_path))
    assert not list(tmp_path.glob("synthetic/*"))
