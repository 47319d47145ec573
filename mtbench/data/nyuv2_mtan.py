"""``nyuv2_mtan``: the MTAN preprocessed NYUv2 (795 train / 654 val, 288×384, 13 classes, depth, normals).

The dataset of the optimisation literature's NYUv2 tables (MTAN, LibMTL, CAGrad, Nash-MTL, FAMO, Aligned-MTL):
``train/`` and ``val/`` with ``image/``, ``label/``, ``depth/``, ``normal/`` folders of ``<i>.npy``. File formats,
the augmentation and its sources: :mod:`mtbench.data.mtan_npy`. Tasks are the LibMTL conventions
(``semseg_libmtl``, ``depth_libmtl``, ``normals_libmtl``); the setting is scored with Δm over all their metrics.
"""
from __future__ import annotations

from mtbench.data import mtan_npy
from mtbench.data.base import DatasetInfo
from mtbench.registry import register_dataset

# ankurhanda/nyuv2-meta-data 13-class labels (SceneNet), ids 1..13 stored as 0..12 (0 = unknown → −1)
CLASS_NAMES = ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "painting", "sofa", "table",
               "tv", "wall", "window")
TASKS = ("semseg_libmtl", "depth_libmtl", "normals_libmtl")
SOURCES = ("image", "semseg", "depth", "normals")
FOLDERS = {"image": "image", "semseg": "label", "depth": "depth", "normals": "normal"}
SPLIT_SIZES = {"train": 795, "val": 654}
IMAGE_SIZE = (288, 384)
OPTIONS = ("data_dir", "augment", "cache_dir")
LAYOUT = """expected the MTAN preprocessed NYUv2 folder (lorenmt/mtan README, Dropbox 'nyuv2'; give it, or its
parent, as --data-dir):
  nyuv2/
    train/image/<i>.npy    288x384x3 RGB in [0, 1], i = 0..794
    train/label/<i>.npy    288x384, 13 classes 0..12, -1 = ignore
    train/depth/<i>.npy    288x384x1, metres, 0 = invalid
    train/normal/<i>.npy   288x384x3 unit normals
    val/...                the same, i = 0..653"""
READERS = {"image": mtan_npy.read_image, "semseg": mtan_npy.label_reader(len(CLASS_NAMES)),
           "depth": mtan_npy.read_depth, "normals": mtan_npy.read_normal}


def find_layout(data_dir, variant: str = "auto") -> mtan_npy.Layout:
    return mtan_npy.Layout(mtan_npy.find_root(data_dir, ("nyuv2", "nyuv2_mtan"), LAYOUT, "nyuv2_mtan"), FOLDERS)


def read_source(layout, kind: str, image_id: str, shape=None):
    """One raw file, decoded (the interface ``data check`` uses for every dataset)."""
    return READERS[kind](layout.path(kind, image_id))


split_ids = mtan_npy.split_ids  # the interface ``data check`` uses: the ids are 0..count-1 of image/*.npy


def needed_kinds(tasks) -> list[str]:
    return mtan_npy.needed_kinds(SOURCES, TASKS, tasks)


def pad_size(layout, cfg) -> tuple[int, int]:
    return IMAGE_SIZE


def size_hint(size, pad) -> str:
    return f"images of {size[0]}x{size[1]}: the MTAN preprocessed NYUv2 is {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}"


def dataset_info(tasks) -> DatasetInfo:
    return DatasetInfo(name="nyuv2_mtan", tasks=tuple(tasks), num_classes={"semseg_libmtl": len(CLASS_NAMES)},
                       class_names={"semseg_libmtl": CLASS_NAMES}, image_size=IMAGE_SIZE,
                       loss_weight_profile="libmtl", delta_m="all")


def _options(cfg):
    return mtan_npy.options(cfg, "nyuv2_mtan", OPTIONS)


@register_dataset("nyuv2_mtan")
def build(split: str, tasks, cfg: dict | None = None) -> mtan_npy.MTANFolder:
    """cfg: data_dir (required), augment (the releases' RandomScaleCrop + flip on the training split)."""
    cfg, tasks = _options(cfg), tuple(tasks)
    mtan_npy.check_split("nyuv2_mtan", split, tasks, TASKS)
    layout = find_layout(cfg.get("data_dir"))
    return mtan_npy.open_split(split, tasks, layout, dataset_info(tasks), READERS, cfg, LAYOUT)


def static_info(tasks, cfg: dict | None = None) -> DatasetInfo:
    _options(cfg)
    return dataset_info(tuple(tasks))


def split_size(split: str, cfg: dict | None) -> int:
    return len(split_ids(find_layout(_options(cfg).get("data_dir")), split))


build.static_info = static_info
build.default_tasks = TASKS
build.default_recipe = "nyuv2_mtan"
build.cfg_keys = OPTIONS
build.split_size = split_size
