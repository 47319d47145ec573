"""``synthetic``: the embedded default dataset, procedural indoor scenes rendered on first use.

It needs no download, so every recipe and test can run anywhere, yet it carries all six tasks
with exact labels (see ``scenes.py``).  Scenes are rendered once per (n, size, seed, renderer
version) and cached as one compressed ``.npz`` per split, so later runs only load them.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mtbench.atomic import atomic_write, clean_stale_temps
from mtbench.data import scenes
from mtbench.data.base import TASK_SETS, IMAGENET_MEAN, IMAGENET_STD, DatasetInfo
from mtbench.registry import register_dataset

# Bump whenever scenes.py changes what it renders: the cache key includes it.
RENDERER_VERSION = 1
SPLITS = ("train", "val")
VALID_TASKS = ("semseg", "depth", "normals", "edge", "sal", "human_parts")
DEFAULTS = {"n_train": 64, "n_val": 32, "height": 96, "width": 128, "seed": 0, "cache_dir": "results/cache"}
_STORED = ("image", "semseg", "instance", "depth", "normals", "edge", "sal", "human_parts", "intrinsics")
_PROGRESS_AFTER_S = 0.5  # show a progress bar only when rendering is predicted to take longer


def scene_seed(seed: int, split: str, index: int) -> int:
    """Seed of one scene; hashing (seed, split, index) keeps train and val disjoint and stable
    when n grows (scene i is the same scene whatever n is)."""
    return int(np.random.SeedSequence([seed, SPLITS.index(split), index]).generate_state(1, np.uint64)[0])


def cache_path(cache_dir: str | os.PathLike, split: str, n: int, height: int, width: int, seed: int) -> Path:
    key = json.dumps([n, height, width, seed, RENDERER_VERSION])
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return Path(cache_dir) / "synthetic" / digest / f"{split}.npz"


def render_split(split: str, n: int, height: int, width: int, seed: int) -> dict[str, np.ndarray]:
    """Render n scenes stacked along a leading axis, with a rich progress bar when slow."""
    frames: list[dict[str, np.ndarray]] = []
    start = time.perf_counter()
    frames.append(scenes.render_scene(scene_seed(seed, split, 0), height, width))
    if (time.perf_counter() - start) * n > _PROGRESS_AFTER_S and n > 1:
        from rich.console import Console
        from rich.progress import Progress

        # stderr: stdout may carry machine-readable output (e.g. a CLI printing JSON).
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(f"rendering synthetic/{split} ({height}x{width})", total=n, completed=1)
            for i in range(1, n):
                frames.append(scenes.render_scene(scene_seed(seed, split, i), height, width))
                progress.advance(task)
    else:
        frames += [scenes.render_scene(scene_seed(seed, split, i), height, width) for i in range(1, n)]
    return {k: np.stack([f[k] for f in frames]) for k in _STORED}


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temp file beside the target, then rename: a crash never leaves a torn cache. Temps of dead
    writers (a kill during an earlier write) are removed first; a full disk names the file."""
    clean_stale_temps(path.parent)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_cache(path: Path, n: int) -> dict[str, np.ndarray]:
    """The cached split; ValueError naming the file when it is corrupt or incomplete."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise ValueError(f"{path}: {type(e).__name__}: {e}") from None
    missing = sorted(set(_STORED) - set(arrays))
    if missing or any(len(a) != n for a in arrays.values()):
        raise ValueError(f"{path}: incomplete (missing {missing} or not {n} scenes)")
    return arrays


def load_or_render(split: str, n: int, height: int, width: int, seed: int, cache_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """The cache if it is whole; a corrupt one is said, removed and rendered again."""
    path = cache_path(cache_dir, split, n, height, width, seed)
    if path.exists():
        try:
            return read_cache(path, n)
        except ValueError as e:
            print(f"corrupt synthetic-scene cache, rendering it again: {e}", file=sys.stderr, flush=True)
            path.unlink(missing_ok=True)
    arrays = render_split(split, n, height, width, seed)
    _save_atomic(path, arrays)
    return arrays


class SyntheticDataset(Dataset):
    """Rendered scenes served in the shared target contract (see ``mtbench.data.base``).

    No data augmentation: the scenes are already procedurally varied, and a fixed sample per
    index keeps resumed runs bit-exact.
    """

    def __init__(self, split: str, tasks: tuple[str, ...], arrays: dict[str, np.ndarray]):
        self.split, self.tasks, self.arrays = split, tuple(tasks), arrays
        n, height, width = arrays["semseg"].shape
        self.info = dataset_info(self.tasks, height, width)
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.arrays["semseg"])

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        i = key[0] if isinstance(key, tuple) else key  # (index, augmentation seed): no augmentation here
        a = self.arrays
        image = torch.from_numpy(a["image"][i]).permute(2, 0, 1).float() / 255.0
        item: dict = {"image": (image - self._mean) / self._std}
        targets = {
            "semseg": lambda: torch.from_numpy(a["semseg"][i].astype(np.int64)),
            "human_parts": lambda: torch.from_numpy(a["human_parts"][i].astype(np.int64)),
            "sal": lambda: torch.from_numpy(a["sal"][i].astype(np.int64)),
            "depth": lambda: torch.from_numpy(a["depth"][i].astype(np.float32)),
            "normals": lambda: torch.from_numpy(np.ascontiguousarray(a["normals"][i].transpose(2, 0, 1), np.float32)),
            "edge": lambda: torch.from_numpy(a["edge"][i].astype(np.float32)),
        }
        for task in self.tasks:
            item[task] = targets[task]()
        item["meta"] = {"id": f"{self.split}_{i:05d}", "size": self.info.image_size}
        return item


def dataset_info(tasks: tuple[str, ...], height: int, width: int) -> DatasetInfo:
    """PASCAL-like task sets get PASCAL's boundary tolerance and loss-weight profile."""
    pascal_like = "sal" in tasks or "human_parts" in tasks
    return DatasetInfo(
        name="synthetic",
        tasks=tuple(tasks),
        num_classes={"semseg": len(scenes.CLASS_NAMES), "human_parts": len(scenes.PART_NAMES)},
        class_names={"semseg": scenes.CLASS_NAMES, "human_parts": scenes.PART_NAMES},
        edge_max_dist=0.0075 if pascal_like else 0.011,
        image_size=(height, width),
        loss_weight_profile="pascal" if pascal_like else "nyud",
    )


def _check(split: str, tasks: tuple[str, ...]) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}' for synthetic; valid splits: {', '.join(SPLITS)}")
    bad = [t for t in tasks if t not in VALID_TASKS]
    if bad:
        raise ValueError(f"unknown task(s) {', '.join(bad)} for synthetic; valid tasks: {', '.join(VALID_TASKS)}")


@register_dataset("synthetic")
def build(split: str, tasks: tuple[str, ...], cfg: dict | None = None) -> SyntheticDataset:
    """cfg keys (all optional): n_train, n_val, height, width, seed, cache_dir."""
    tasks = tuple(tasks)
    _check(split, tasks)
    c = _resolve(cfg)
    n = int(c["n_train"] if split == "train" else c["n_val"])
    arrays = load_or_render(split, n, int(c["height"]), int(c["width"]), int(c["seed"]), c["cache_dir"])
    return SyntheticDataset(split, tasks, arrays)


def _resolve(cfg: dict | None) -> dict:
    unknown = set(cfg or {}) - set(DEFAULTS) - {"data_dir"}
    if unknown:
        raise ValueError(f"unknown synthetic dataset option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    if (cfg or {}).get("data_dir"):
        raise ValueError("the synthetic dataset is rendered, not read: drop --data-dir (or pick --dataset nyud/pascal)")
    return {**DEFAULTS, **(cfg or {})}


def static_info(tasks: tuple[str, ...], cfg: dict | None = None) -> DatasetInfo:
    """The DatasetInfo without rendering anything (for profiling and model construction)."""
    c = _resolve(cfg)
    return dataset_info(tuple(tasks), int(c["height"]), int(c["width"]))


def split_size(split: str, cfg: dict | None) -> int:
    """Scenes in a split, from the cfg alone (checked against the batch size before anything is rendered)."""
    c = _resolve(cfg)
    return int(c["n_train"] if split == "train" else c["n_val"])


build.static_info = static_info
build.default_tasks = TASK_SETS["nyud"]  # NYUD-like by default; --tasks pascal for the 5-task set
build.default_recipe = "smoke"  # the CPU recipe of the default job
build.cfg_keys = tuple(DEFAULTS) + ("data_dir",)
build.split_size = split_size
