"""The ``.npy`` folders of the MTAN preprocessed datasets (NYUv2 13-class, Cityscapes 7/19-class), shared by
``nyuv2_mtan`` and ``cityscapes_mtan``.

Layout (lorenmt/mtan README; read by MTAN ``im2im_pred/create_dataset.py``, LibMTL ``examples/nyu`` and
``examples/cityscapes``, CAGrad, Nash-MTL, FAMO): ``<root>/{train,val}/<kind>/<i>.npy`` with i = 0 … N−1. The
released loaders count ``image/*.npy`` and read indices ``0 … count−1``, so a gap in the numbering is a missing file.
What the files hold (the loaders cast every array with ``.float()``):

- ``image``: H×W×3, RGB in [0, 1] (k/255; float64 in the download, lorenmt/mtan#50). Fed to the networks as is:
  none of the releases normalises it (no ImageNet mean/std, even for LibMTL's ImageNet ResNet-50).
- labels (``label``, ``label_7``, ``label_19``): H×W class ids, −1 = ignore (``ignore_index=-1`` in their losses,
  ``0 <= gt < C`` in their confusion matrices). Here −1 becomes mtbench's 255.
- ``depth``: H×W×1; 0 = invalid (their mask ``sum over channels != 0``). NYUv2 in metres; Cityscapes the
  preprocessed inverse depth (disparity), as the release defines it.
- ``normal``: H×W×3, unit vectors (Eigen's precomputed normals); a pixel whose components sum to 0 is invalid
  (LibMTL's mask). Kept raw: the ``normals_libmtl`` task applies that mask itself.

Training augmentation (``augment: true``) is the releases' ``RandomScaleCrop`` + flip (MTAN issue #34, copied by
LibMTL, CAGrad and Nash-MTL): a scale s from {1.0, 1.2, 1.5} (uniform), a crop of int(H/s) × int(W/s) at a
uniform offset (both ends included, ``random.randint``), resized back to H × W — the image and the normals
bilinearly with ``align_corners=True`` (normals not renormalised), labels and depth by nearest neighbour, depth ÷ s —
then a horizontal flip with p = 0.5 that negates the normals' x. Draws come from the sample seed (resume-exact).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mtbench.data.base import IGNORE, DatasetInfo
from mtbench.data.folder import DataFileError, names_file

SPLITS = ("train", "val")
SCALES = (1.0, 1.2, 1.5)


@dataclass(frozen=True)
class Layout:
    """``folders``: source kind → folder name (e.g. semseg → ``label_7``)."""

    root: Path
    folders: dict

    def path(self, kind: str, image_id: str) -> Path:
        """``image_id`` is ``<split>/<index>``."""
        split, index = image_id.split("/")
        return self.root / split / self.folders[kind] / f"{index}.npy"

    def split_file(self, split: str) -> Path:
        """What ``data check`` requires for a split: its image folder."""
        return self.split_dir(split)

    def split_dir(self, split: str) -> Path:
        return self.root / split / self.folders["image"]


def split_ids(layout: Layout, split: str) -> list[str]:
    """``<split>/<i>``, i = 0 … (number of ``image/*.npy``) − 1: the indices the released loaders read."""
    d = layout.split_dir(split)
    n = sum(1 for _ in d.glob("*.npy")) if d.is_dir() else 0
    return [f"{split}/{i}" for i in range(n)]


def id_path(layout: Layout, kind: str, image_id: str) -> Path:
    return layout.path(kind, image_id)


def _load(path: Path) -> np.ndarray:
    x = np.load(path, allow_pickle=False)
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"expected a numeric array, got dtype {x.dtype}")
    return x


@names_file
def read_image(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    x = _load(path)
    if x.ndim != 3 or x.shape[2] != 3 or not np.isfinite(x).all():
        raise ValueError(f"expected a finite HxWx3 RGB array in [0, 1], got shape {x.shape}")
    return x.astype(np.float32)


def label_reader(num_classes: int):
    @names_file
    def read_label(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Class ids 0…C−1, −1 → 255 (uint8)."""
        x = np.squeeze(_load(path))
        if x.ndim != 2 or not np.isfinite(x).all() or (x != np.round(x)).any():
            raise ValueError(f"expected an HxW map of integer class ids, got shape {x.shape}")
        bad = (x != -1) & ((x < 0) | (x >= num_classes))
        if bad.any():
            raise ValueError(f"class ids must be -1 (ignore) or 0..{num_classes - 1}, found {np.unique(x[bad])[:6]}")
        return np.where(x == -1, IGNORE, x).astype(np.uint8)

    return read_label


@names_file
def read_depth(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    x = _load(path)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"expected finite HxWx1 depth, got shape {x.shape}")
    return x.astype(np.float32)


@names_file
def read_normal(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    x = _load(path)
    if x.ndim != 3 or x.shape[2] != 3 or not np.isfinite(x).all():
        raise ValueError(f"expected finite HxWx3 normals, got shape {x.shape}")
    return x.astype(np.float32)


def find_root(data_dir: str | Path | None, names: tuple[str, ...], layout_text: str, dataset: str,
              image_folder: str = "image") -> Path:
    """``data_dir`` itself or a child named like the download, holding ``train/image`` and ``val/image``."""
    if not data_dir:
        raise ValueError(f"the {dataset} dataset needs --data-dir.\n{layout_text}")
    base = Path(data_dir).expanduser()
    for root in (base,) + tuple(base / n for n in names):
        if (root / "train" / image_folder).is_dir() or (root / "val" / image_folder).is_dir():
            return root
    raise FileNotFoundError(f"no {dataset} data under {base} (no train/{image_folder}/ or val/{image_folder}/ "
                            f"there).\n{layout_text}")


# ------------------------------------------------------------------- augmentation (RandomScaleCrop + flip)
def scale_crop_flip(arrays: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """``arrays``: image (3,H,W), normals (3,H,W) float; semseg (H,W) and depth (H,W) — the released
    ``RandomScaleCrop`` then the flip, every draw from ``seed`` in their order (scale, top, left, flip)."""
    rng = random.Random(seed)
    height, width = arrays["image"].shape[-2:]
    sc = SCALES[rng.randint(0, len(SCALES) - 1)]
    h, w = int(height / sc), int(width / sc)
    i, j = rng.randint(0, height - h), rng.randint(0, width - w)
    out = {}
    for key, x in arrays.items():
        crop = x[..., i:i + h, j:j + w]
        if key in ("image", "normals"):
            out[key] = F.interpolate(crop[None], size=(height, width), mode="bilinear", align_corners=True)[0]
        else:  # labels and depth: nearest (float, as the released code interpolates them)
            out[key] = F.interpolate(crop[None, None].float(), size=(height, width), mode="nearest")[0, 0]
    if "depth" in out:
        out["depth"] = out["depth"] / sc
    if rng.random() < 0.5:
        out = {k: torch.flip(v, dims=[-1]) for k, v in out.items()}
        if "normals" in out:
            out["normals"][0] = -out["normals"][0]
    return out


class MTANFolder(Dataset):
    """The sample contract of ``mtbench.data.base``, with the MTAN conventions: image in [0, 1] (not normalised),
    semseg int64 with 255 = ignore, depth float (0 = invalid), normals raw (3,H,W)."""

    def __init__(self, split: str, tasks: tuple[str, ...], layout: Layout, ids: list[str], info: DatasetInfo,
                 readers: dict, augment: bool):
        self.split, self.tasks, self.layout, self.ids = split, tuple(tasks), layout, ids
        self.info, self.readers, self.augment = info, readers, augment
        self.sources = {t: k for k, t in TASK_OF_KIND.items() if t in self.tasks}  # task -> source kind

    def __len__(self) -> int:
        return len(self.ids)

    def raw(self, index: int) -> dict[str, np.ndarray]:
        image_id = self.ids[index]
        raw = {"image": self.readers["image"](id_path(self.layout, "image", image_id))}
        for task, kind in self.sources.items():
            raw[task] = self.readers[kind](id_path(self.layout, kind, image_id))
        size = raw["image"].shape[:2]
        for key, x in raw.items():
            if x.shape[:2] != size:
                kind = self.sources.get(key, "image")
                raise DataFileError(f"{id_path(self.layout, kind, image_id)}: {x.shape[:2]} does not match the "
                                    f"image {size}")
        return raw

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, seed = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        raw = self.raw(index)
        kind_of = {"image": "image", **self.sources}
        arrays = {kind_of[k]: torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1) if v.ndim == 3 else v))
                  for k, v in raw.items()}
        if seed is not None and self.augment:
            arrays = scale_crop_flip({k: v.float() for k, v in arrays.items()}, seed)
        item = {"image": arrays["image"].float()}
        for t, kind in self.sources.items():
            item[t] = arrays[kind].long() if kind == "semseg" else arrays[kind].float()
        size = tuple(item["image"].shape[-2:])
        if size != tuple(self.info.image_size):
            raise DataFileError(f"{id_path(self.layout, 'image', self.ids[index])}: {size[0]}x{size[1]}, expected "
                                f"{self.info.image_size[0]}x{self.info.image_size[1]} (the MTAN preprocessed size)")
        item["meta"] = {"id": self.ids[index], "size": size, "offset": (0, 0)}
        return item


# The LibMTL-convention tasks these folders feed, by source kind.
TASK_OF_KIND = {"semseg": "semseg_libmtl", "depth": "depth_libmtl", "normals": "normals_libmtl"}


# ------------------------------------------------------------------- what nyuv2_mtan and cityscapes_mtan share
def options(cfg: dict | None, dataset: str, known: tuple[str, ...]) -> dict:
    """The dataset's cfg as a dict, after refusing keys it does not know (a typo would otherwise be ignored)."""
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(known)
    if unknown:
        raise ValueError(f"unknown {dataset} dataset option(s) {sorted(unknown)}; valid: {sorted(known)}")
    return cfg


def needed_kinds(sources: tuple[str, ...], task_names: tuple[str, ...], tasks) -> list[str]:
    """The source kinds to read for ``tasks``: the image and the kind of each task asked (``sources[1:]`` pair
    with ``task_names``)."""
    wanted = {"image"} | {k for k, t in zip(sources[1:], task_names) if t in tasks}
    return [k for k in sources if k in wanted]


def check_split(dataset: str, split: str, tasks: tuple[str, ...], known_tasks: tuple[str, ...]) -> None:
    """Before any file is looked for: the split and the tasks must be ones the dataset has."""
    bad = [t for t in tasks if t not in known_tasks]
    if split not in SPLITS or bad:
        raise ValueError(f"{dataset}: split must be one of {SPLITS} and tasks among {known_tasks}; got "
                         f"'{split}', {list(tasks)}")


def open_split(split: str, tasks: tuple[str, ...], layout: Layout, info: DatasetInfo, readers: dict, cfg: dict,
               layout_text: str) -> MTANFolder:
    """The split's folder, refused when it holds no image; ``augment`` applies to the training split only."""
    ids = split_ids(layout, split)
    if not ids:
        raise FileNotFoundError(f"no {split}/image/*.npy under {layout.root}.\n{layout_text}")
    return MTANFolder(split, tasks, layout, ids, info, readers, split == "train" and bool(cfg.get("augment", False)))
