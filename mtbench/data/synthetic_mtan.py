"""Synthetic stand-ins of the two MTAN settings: ``synthetic_nyuv2_mtan`` (13 classes, depth, normals, 288×384)
and ``synthetic_cityscapes_mtan`` (7 classes, inverse depth, 128×256), rendered from the synthetic scenes.

Same tasks (the ``*_libmtl`` conventions), resolution, class counts, image range ([0, 1], not normalised) and Δm
convention (all metrics) as the real folders, so a recipe, a method or a weighting strategy can be tried on a CPU
before the real data is at hand. Classes come from the scenes' 10: for NYUv2's 13 the room's wall is split into its
four walls (scene instances −3…−6); for Cityscapes' 7, furniture-like classes are merged. Depth: metres (NYUv2) or
1/metres (the Cityscapes download holds a disparity-like inverse depth). Scenes are cached as ``synthetic`` caches
them (one ``.npz`` per split and size).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mtbench.data import mtan_npy, scenes, synthetic
from mtbench.data.base import DatasetInfo
from mtbench.registry import register_dataset

WALL = scenes.CLASS_NAMES.index("wall")
SETTINGS = {
    "synthetic_nyuv2_mtan": {
        "size": (288, 384), "tasks": ("semseg_libmtl", "depth_libmtl", "normals_libmtl"),
        "classes": scenes.CLASS_NAMES[:WALL] + ("wall 1",) + scenes.CLASS_NAMES[WALL + 1:] + ("wall 2", "wall 3",
                                                                                              "wall 4"),
        "recipe": "smoke_nyuv2_mtan"},
    "synthetic_cityscapes_mtan": {
        "size": (128, 256), "tasks": ("semseg_libmtl", "depth_libmtl"),
        "classes": ("wall", "floor", "ceiling", "cabinet+table", "bed", "crate+stool", "ball+lamp"),
        "recipe": "smoke_cityscapes_mtan"},
}
# scene class index -> Cityscapes-like class (names above)
MERGE_7 = np.array([{"wall": 0, "floor": 1, "ceiling": 2, "cabinet": 3, "table": 3, "bed": 4, "crate": 5,
                     "stool": 5, "ball": 6, "lamp": 6}[c] for c in scenes.CLASS_NAMES], np.uint8)
DEFAULTS = {"n_train": 32, "n_val": 8, "seed": 0, "augment": False, "cache_dir": "results/cache"}


def labels(name: str, semseg: np.ndarray, instance: np.ndarray) -> np.ndarray:
    if name == "synthetic_cityscapes_mtan":
        return MERGE_7[semseg]
    out = semseg.copy()
    for k, inst in enumerate((-4, -5, -6)):  # wall 1 keeps the scenes' wall id; walls 2-4 get ids 10-12
        out[(semseg == WALL) & (instance == inst)] = len(scenes.CLASS_NAMES) + k
    return out


class SyntheticMTAN(Dataset):
    def __init__(self, name: str, split: str, tasks, arrays: dict, augment: bool):
        self.name, self.split, self.tasks, self.arrays, self.augment = name, split, tuple(tasks), arrays, augment
        self.info = dataset_info(name, self.tasks)

    def __len__(self) -> int:
        return len(self.arrays["semseg"])

    def __getitem__(self, key):
        i, seed = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        a = self.arrays
        depth = a["depth"][i].astype(np.float32)
        if self.name == "synthetic_cityscapes_mtan":
            depth = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0).astype(np.float32)
        by_kind = {"image": torch.from_numpy(a["image"][i].transpose(2, 0, 1).astype(np.float32) / 255.0),
                   "semseg": torch.from_numpy(labels(self.name, a["semseg"][i], a["instance"][i]).astype(np.int64)),
                   "depth": torch.from_numpy(depth),
                   "normals": torch.from_numpy(np.ascontiguousarray(a["normals"][i].transpose(2, 0, 1), np.float32))}
        if seed is not None and self.augment:
            by_kind = mtan_npy.scale_crop_flip({k: v.float() for k, v in by_kind.items()}, seed)
        item = {"image": by_kind["image"].float()}
        for kind, task in mtan_npy.TASK_OF_KIND.items():
            if task in self.tasks:
                item[task] = by_kind[kind].long() if kind == "semseg" else by_kind[kind].float()
        item["meta"] = {"id": f"{self.split}_{i:05d}", "size": self.info.image_size, "offset": (0, 0)}
        return item


def dataset_info(name: str, tasks) -> DatasetInfo:
    s = SETTINGS[name]
    return DatasetInfo(name=name, tasks=tuple(tasks), num_classes={"semseg_libmtl": len(s["classes"])},
                       class_names={"semseg_libmtl": s["classes"]}, image_size=s["size"],
                       loss_weight_profile="libmtl", delta_m="all")


def _make(name: str):
    setting = SETTINGS[name]

    def resolve(cfg):
        cfg = dict(cfg or {})
        if cfg.get("data_dir"):
            raise ValueError(f"{name} is rendered, not read: drop --data-dir (or pick --dataset {name[10:]})")
        cfg.pop("data_dir", None)
        unknown = set(cfg) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown {name} dataset option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
        return {**DEFAULTS, **cfg}

    def build(split: str, tasks, cfg: dict | None = None) -> SyntheticMTAN:
        """cfg: n_train, n_val, seed, augment (the MTAN RandomScaleCrop + flip), cache_dir."""
        c, tasks = resolve(cfg), tuple(tasks)
        bad = [t for t in tasks if t not in setting["tasks"]]
        if split not in synthetic.SPLITS or bad:
            raise ValueError(f"{name}: split must be one of {synthetic.SPLITS} and tasks among {setting['tasks']}; "
                             f"got '{split}', {list(tasks)}")
        n = int(c["n_train"] if split == "train" else c["n_val"])
        arrays = synthetic.load_or_render(split, n, *setting["size"], int(c["seed"]), c["cache_dir"])
        return SyntheticMTAN(name, split, tasks, arrays, split == "train" and bool(c["augment"]))

    build.static_info = lambda tasks, cfg=None: (resolve(cfg), dataset_info(name, tuple(tasks)))[1]
    build.split_size = lambda split, cfg: int(resolve(cfg)["n_train" if split == "train" else "n_val"])
    build.default_tasks = setting["tasks"]
    build.default_recipe = setting["recipe"]
    build.cfg_keys = tuple(DEFAULTS) + ("data_dir",)
    build.__name__ = f"build_{name}"
    build.__doc__ = build.__doc__
    return register_dataset(name)(build)


for _name in SETTINGS:
    _make(_name)
