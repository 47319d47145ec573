"""``pascal``: PASCAL-Context for multi-task learning (4,998 train / 5,105 val images, 5 tasks).

Reads ASTMT / MTI-Net's ``PASCAL_MT`` folder, which ATRC / InvPT / MQT ship as ``PASCALContext``.
Targets follow ATRC's ``data/pascal_context.py`` (from ASTMT):

* semseg: ``semseg/VOC12/<id>.png``, else ``semseg/pascal-context/<id>.png``; 21 VOC classes, 255 kept;
* human_parts: PASCAL-Part persons rasterised into 7 classes (``pascal_parts``); images without
  a person with parts → all 255;
* sal: ``sal_distill/<id>.png`` / 255 > 0.5;
* normals: ``normals_distill/<id>.png`` (2·v/255 − 1), kept only on pixels whose 459-class
  Context label is also an NYU-v2 class (``nyu_classes.json`` ∩ ``context_classes.json``, minus
  'unknown') or 'tvmonitor'; elsewhere invalid (255);
* edge: label discontinuities of the Context ``LabelMap`` in ``pascal-context/trainval/<id>.mat``:
  ``cv2.Laplacian`` (4-neighbour kernel, reflect-101 border) ≠ 0, thinned with skimage ``thin``.

Images (at most 500x500) are padded, centred, to 512x512.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from skimage.morphology import thin

from mtbench.data import pascal_parts, transforms
from mtbench.data.base import IGNORE, TASK_SETS, DatasetInfo
from mtbench.data.folder import FolderDataset, names_file
from mtbench.data.nyud import read_ids, read_image, resolve_edge_eval_ids
from mtbench.registry import register_dataset

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
TASKS = TASK_SETS["pascal"]
SPLITS = ("train", "val")
SPLIT_SIZES = {"train": 4998, "val": 5105}
EDGE_MAX_DIST = 0.0075
PAD_SIZE = (512, 512)
N_CONTEXT_CLASSES = 459
# Context label ids (context_classes.json) whose name is also in nyu_classes.json, 'unknown'
# excluded, plus tvmonitor (427): the ASTMT / MTI-Net / ATRC normals_valid_classes (170 ids).
NORMALS_CONTEXT_IDS = (
    3, 4, 6, 9, 10, 11, 13, 15, 17, 18, 22, 23, 29, 30, 33, 34, 36, 37, 38, 39, 41, 43, 46, 49, 50, 51, 53, 55,
    56, 59, 61, 62, 65, 66, 68, 69, 72, 73, 78, 83, 84, 85, 87, 88, 95, 96, 101, 104, 105, 107, 111, 113, 115,
    122, 124, 135, 141, 142, 143, 146, 150, 154, 157, 158, 159, 165, 172, 174, 181, 183, 184, 191, 193, 195,
    197, 199, 202, 213, 215, 216, 219, 220, 223, 225, 228, 230, 232, 233, 238, 239, 242, 243, 246, 250, 251,
    252, 255, 260, 261, 263, 269, 272, 273, 275, 281, 283, 284, 285, 286, 287, 288, 290, 291, 292, 293, 295,
    304, 307, 309, 310, 314, 315, 319, 323, 329, 330, 331, 336, 342, 345, 349, 350, 351, 352, 355, 357, 368,
    370, 371, 374, 379, 380, 383, 384, 397, 401, 403, 405, 407, 408, 411, 412, 413, 414, 417, 419, 421, 423,
    427, 429, 430, 432, 440, 441, 442, 443, 444, 446, 454, 457,
)
SOURCES = ("image", "semseg", "context", "human_parts", "normals", "sal")
OPTIONS = ("data_dir", "pad_size", "edge_eval_ids", "cache_dir") + transforms.AUGMENT_KEYS
NO_TEST_NEW = ("edge_eval_ids 'seism_test_new': SEISM's PASCALContext test_new id list is not published in "
               "the MTI-Net / ATRC / InvPT repositories, so it is not built in; pass the list as a text file "
               "(one id per line) or leave edge_eval_ids unset to score all 5,105 val images")

LAYOUT = """expected a PASCAL-Context multi-task folder (give it, or its parent, as --data-dir):
  PASCALContext/   the ATRC / InvPT / MQTransformer download (PASCALContext.tar.gz),
                   = PASCAL_MT/ of the MTI-Net / ASTMT tarball (PASCAL_MT.tgz)
    ImageSets/Context/train.txt, val.txt   4,998 / 5,105 ids, one per line
    JPEGImages/<id>.jpg                     RGB, at most 500x500
    semseg/VOC12/<id>.png or semseg/pascal-context/<id>.png   21 classes, 255 = ignore
    human_parts/<id>.mat                    PASCAL-Part 'anno' struct
    pascal-context/trainval/<id>.mat        459-class 'LabelMap' (edges, normals mask)
    normals_distill/<id>.png                RGB, n = 2*v/255 - 1
    sal_distill/<id>.png                    grey, saliency = v/255 > 0.5"""


@dataclass(frozen=True)
class Layout:
    root: Path

    def path(self, kind: str, image_id: str) -> Path:
        if kind == "semseg":
            voc = self.root / "semseg" / "VOC12" / f"{image_id}.png"
            return voc if voc.is_file() else self.root / "semseg" / "pascal-context" / f"{image_id}.png"
        rel = {"image": f"JPEGImages/{image_id}.jpg", "context": f"pascal-context/trainval/{image_id}.mat",
               "human_parts": f"human_parts/{image_id}.mat", "normals": f"normals_distill/{image_id}.png",
               "sal": f"sal_distill/{image_id}.png"}[kind]
        return self.root / rel

    def candidates(self, kind: str, image_id: str) -> list[Path]:
        """Every path tried for ``kind`` (semseg has two), for error messages."""
        if kind == "semseg":
            return [self.root / "semseg" / sub / f"{image_id}.png" for sub in ("VOC12", "pascal-context")]
        return [self.path(kind, image_id)]

    def split_file(self, split: str) -> Path:
        return self.root / "ImageSets" / "Context" / f"{split}.txt"


def find_layout(data_dir: str | Path | None) -> Layout:
    if not data_dir:
        raise ValueError(f"the pascal dataset needs --data-dir.\n{LAYOUT}")
    base = Path(data_dir).expanduser()
    for root in (base, base / "PASCALContext", base / "PASCAL_MT"):
        if (root / "ImageSets" / "Context").is_dir() and (root / "JPEGImages").is_dir():
            return Layout(root)
    raise FileNotFoundError(f"no PASCAL-Context data under {base} (no ImageSets/Context/ and JPEGImages/).\n{LAYOUT}")


# ------------------------------------------------------------ raw files (shared with `data check`)
@names_file
def read_semseg(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        x = np.asarray(im)
    if x.ndim != 2 or not (((x <= 20) | (x == IGNORE)).all()):
        raise ValueError(f"{path}: expected a 2-D label map with values 0..20 or 255, got shape {x.shape}, "
                         f"values {np.unique(x)[-5:]}")
    return x.astype(np.uint8)


@names_file
def read_label_map(path: Path) -> np.ndarray:
    mat = scipy.io.loadmat(str(path))
    if "LabelMap" not in mat:
        raise ValueError(f"{path}: no 'LabelMap' variable")
    x = np.asarray(mat["LabelMap"])
    if x.ndim != 2 or x.min(initial=0) < 0 or x.max(initial=0) > N_CONTEXT_CLASSES:
        raise ValueError(f"{path}: expected a 2-D LabelMap with values 0..{N_CONTEXT_CLASSES}, shape {x.shape}")
    return x.astype(np.int64)


def label_edges(labels: np.ndarray) -> np.ndarray:
    """ATRC ``_load_edge``: thin(|Laplacian(LabelMap)| > 0) with OpenCV's default Laplacian
    (ksize 1: the 4-neighbour kernel, BORDER_REFLECT_101 = numpy's 'reflect')."""
    p = np.pad(labels.astype(np.int64), 1, mode="reflect")
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]
    return thin(lap != 0).astype(np.uint8)


@names_file
def read_normals(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        x = 2.0 * np.asarray(im.convert("RGB"), np.float32) / 255.0 - 1.0
    return x


@names_file
def read_sal(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        x = np.asarray(im)
    if x.ndim == 3:
        x = x[..., 0]
    return (x.astype(np.float32) / 255.0 > 0.5).astype(np.uint8)


def read_source(layout: Layout, kind: str, image_id: str, shape: tuple[int, int]) -> np.ndarray:
    """One raw file, decoded; ``shape`` (the image's) is what the part masks are drawn into."""
    path = layout.path(kind, image_id)
    if kind == "human_parts":
        return names_file(pascal_parts.rasterise)(path, shape)
    return {"image": read_image, "semseg": read_semseg, "context": read_label_map,
            "normals": read_normals, "sal": read_sal}[kind](path)


class PASCALContext(FolderDataset):
    """The sample contract of ``mtbench.data.base``; semseg is always read (ATRC's crop test)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.info = dataset_info(self.tasks, self.pad_size)
        self._normals_ids = np.array(NORMALS_CONTEXT_IDS)

    def raw(self, index: int) -> dict[str, np.ndarray]:
        image_id = self.ids[index]
        image = read_image(self.layout.path("image", image_id))
        shape = image.shape[:2]

        def read(kind):
            x = read_source(self.layout, kind, image_id, shape)
            if x.shape[:2] != shape:
                raise ValueError(f"{self.layout.path(kind, image_id)}: {x.shape[:2]} does not match the image {shape}")
            return x

        raw = {"image": image, "semseg": read("semseg")}
        labels = read("context") if ("edge" in self.tasks or "normals" in self.tasks) else None
        if "human_parts" in self.tasks:
            raw["human_parts"] = read("human_parts")
        if "sal" in self.tasks:
            raw["sal"] = read("sal")
        if "normals" in self.tasks:
            keep = np.isin(labels, self._normals_ids)[..., None]
            raw["normals"] = transforms.unit_normals(np.where(keep, read("normals"), 0))
        if "edge" in self.tasks:
            raw["edge"] = label_edges(labels)
        return raw


def dataset_info(tasks: tuple[str, ...], pad_size: tuple[int, int]) -> DatasetInfo:
    """``image_size`` is the padded input size: what the model sees."""
    return DatasetInfo(name="pascal", tasks=tuple(tasks),
                       num_classes={"semseg": len(VOC_CLASSES), "human_parts": len(pascal_parts.PART_NAMES)},
                       class_names={"semseg": VOC_CLASSES, "human_parts": pascal_parts.PART_NAMES},
                       edge_max_dist=EDGE_MAX_DIST, image_size=tuple(pad_size), loss_weight_profile="pascal")


def _options(cfg: dict | None) -> dict:
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown pascal dataset option(s) {sorted(unknown)}; valid: {sorted(OPTIONS)}")
    if cfg.get("edge_eval_ids") == "seism_test_new":
        raise ValueError(NO_TEST_NEW)
    return cfg


@register_dataset("pascal")
def build(split: str, tasks: tuple[str, ...], cfg: dict | None = None) -> PASCALContext:
    """cfg: data_dir (required), pad_size, edge_eval_ids (a file of ids; val split only), augment,
    scale_range, cat_max_ratio, flip_prob, photometric."""
    cfg, tasks = _options(cfg), tuple(tasks)
    bad = [t for t in tasks if t not in TASKS]
    if split not in SPLITS or bad:
        raise ValueError(f"pascal: split must be one of {SPLITS} and tasks among {TASKS}; got '{split}', {list(tasks)}")
    layout = find_layout(cfg.get("data_dir"))
    if not layout.split_file(split).is_file():
        raise FileNotFoundError(f"missing {layout.split_file(split)}.\n{LAYOUT}")
    ids = read_ids(layout.split_file(split))
    pad = transforms.parse_size(cfg.get("pad_size"), PAD_SIZE)
    edge_ids = resolve_edge_eval_ids(cfg.get("edge_eval_ids"), ids, {}) if split == "val" else None
    return PASCALContext(split, tasks, layout, ids, pad, transforms.augment_from_cfg(cfg), edge_ids)


def static_info(tasks: tuple[str, ...], cfg: dict | None = None) -> DatasetInfo:
    return dataset_info(tuple(tasks), transforms.parse_size(_options(cfg).get("pad_size"), PAD_SIZE))


def pad_size(layout: Layout, cfg: dict | None) -> tuple[int, int]:
    return transforms.parse_size((cfg or {}).get("pad_size"), PAD_SIZE)


def split_size(split: str, cfg: dict | None) -> int:
    """Images in a split, from its id list alone (checked against the batch size before any run)."""
    layout = find_layout(_options(cfg).get("data_dir"))
    if not layout.split_file(split).is_file():
        raise FileNotFoundError(f"missing {layout.split_file(split)}.\n{LAYOUT}")
    return len(read_ids(layout.split_file(split)))


def size_hint(size: tuple[int, int], pad: tuple[int, int]) -> str:
    return f"images of {size[0]}x{size[1]} do not fit pad_size {pad[0]}x{pad[1]}: set datasets.pascal.pad_size"


build.static_info = static_info
build.default_tasks = TASKS
build.cfg_keys = OPTIONS
build.split_size = split_size
