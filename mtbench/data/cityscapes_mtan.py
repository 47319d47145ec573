"""``cityscapes_mtan``: the MTAN preprocessed Cityscapes (2,975 train / 500 val, 128×256, 7 or 19 classes, depth).

The dataset of the optimisation literature's Cityscapes tables (MTAN, CAGrad, Nash-MTL, FAMO; LibMTL
``examples/cityscapes``): ``train/`` and ``val/`` with ``image/``, ``label_7/``, ``label_19/`` (and ``label_2/``),
``depth/`` folders of ``<i>.npy``. CAGrad / Nash-MTL read ``label_7``; LibMTL reads ``label/`` (the same 7-class
maps renamed in its copy), which is used when ``label_7/`` is absent. Depth is the release's inverse depth
(0 = invalid). File formats and the augmentation: :mod:`mtbench.data.mtan_npy`.
"""
from __future__ import annotations

from mtbench.data import mtan_npy
from mtbench.data.base import DatasetInfo
from mtbench.registry import register_dataset

CLASS_NAMES = {
    # the Cityscapes categories without 'void' (MTAN paper, Sec. 4.1)
    7: ("flat", "construction", "object", "nature", "sky", "human", "vehicle"),
    # the Cityscapes train ids
    19: ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
         "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"),
}
TASKS = ("semseg_libmtl", "depth_libmtl")
SOURCES = ("image", "semseg", "depth")
SPLIT_SIZES = {"train": 2975, "val": 500}
IMAGE_SIZE = (128, 256)
OPTIONS = ("data_dir", "augment", "classes", "cache_dir")
LAYOUT = """expected the MTAN preprocessed Cityscapes folder, 128x256 version (lorenmt/mtan README, Dropbox
'cityscapes'; give it, or its parent, as --data-dir):
  cityscapes/
    train/image/<i>.npy      128x256x3 RGB in [0, 1], i = 0..2974
    train/label_7/<i>.npy    128x256, 7 classes 0..6, -1 = ignore   (LibMTL's copy: label/)
    train/label_19/<i>.npy   128x256, 19 classes 0..18, -1 = ignore (for classes: 19)
    train/depth/<i>.npy      128x256x1 inverse depth, 0 = invalid
    val/...                  the same, i = 0..499"""


def _classes(cfg) -> int:
    n = int((cfg or {}).get("classes", 7))
    if n not in CLASS_NAMES:
        raise ValueError(f"cityscapes_mtan: classes must be 7 or 19 (label_7/ or label_19/), got {n}")
    return n


def readers(classes: int) -> dict:
    return {"image": mtan_npy.read_image, "semseg": mtan_npy.label_reader(classes), "depth": mtan_npy.read_depth}


def find_layout(data_dir, classes: int = 7) -> mtan_npy.Layout:
    root = mtan_npy.find_root(data_dir, ("cityscapes", "cityscapes2", "cityscapes_mtan"), LAYOUT, "cityscapes_mtan")
    label = f"label_{classes}"
    if classes == 7 and not any((root / s / label).is_dir() for s in mtan_npy.SPLITS) and \
            any((root / s / "label").is_dir() for s in mtan_npy.SPLITS):
        label = "label"  # LibMTL's copy of the 7-class maps
    return mtan_npy.Layout(root, {"image": "image", "semseg": label, "depth": "depth"})


def read_source(layout, kind: str, image_id: str, shape=None):
    classes = 19 if layout.folders["semseg"] == "label_19" else 7
    return readers(classes)[kind](layout.path(kind, image_id))


split_ids = mtan_npy.split_ids  # the interface ``data check`` uses: the ids are 0..count-1 of image/*.npy


def needed_kinds(tasks) -> list[str]:
    return mtan_npy.needed_kinds(SOURCES, TASKS, tasks)


def pad_size(layout, cfg) -> tuple[int, int]:
    return IMAGE_SIZE


def size_hint(size, pad) -> str:
    return (f"images of {size[0]}x{size[1]}: this loader reads the 128x256 MTAN Cityscapes (the 256x512 "
            f"download is another setting)")


def dataset_info(tasks, classes: int = 7) -> DatasetInfo:
    return DatasetInfo(name="cityscapes_mtan", tasks=tuple(tasks), num_classes={"semseg_libmtl": classes},
                       class_names={"semseg_libmtl": CLASS_NAMES[classes]}, image_size=IMAGE_SIZE,
                       loss_weight_profile="libmtl", delta_m="all")


def _options(cfg):
    return mtan_npy.options(cfg, "cityscapes_mtan", OPTIONS)


@register_dataset("cityscapes_mtan")
def build(split: str, tasks, cfg: dict | None = None) -> mtan_npy.MTANFolder:
    """cfg: data_dir (required), classes (7 or 19), augment (RandomScaleCrop + flip on the training split)."""
    cfg, tasks = _options(cfg), tuple(tasks)
    mtan_npy.check_split("cityscapes_mtan", split, tasks, TASKS)
    classes = _classes(cfg)
    layout = find_layout(cfg.get("data_dir"), classes)
    return mtan_npy.open_split(split, tasks, layout, dataset_info(tasks, classes), readers(classes), cfg, LAYOUT)


def static_info(tasks, cfg: dict | None = None) -> DatasetInfo:
    return dataset_info(tuple(tasks), _classes(_options(cfg)))


def split_size(split: str, cfg: dict | None) -> int:
    cfg = _options(cfg)
    return len(split_ids(find_layout(cfg.get("data_dir"), _classes(cfg)), split))


build.static_info = static_info
build.default_tasks = TASKS
build.default_recipe = "cityscapes_mtan"
build.cfg_keys = OPTIONS
build.split_size = split_size
