"""``nyud``: NYU-Depth v2 for multi-task learning (795 train / 654 test images, NYUv2-40 classes).

Reads the ATRC / InvPT / MQTransformer ``NYUDv2`` folder and MTI-Net / ASTMT's ``NYUD_MT``
(480x640 JPEGs, ``.npy`` labels), told apart by the files present. Targets follow ATRC's
``data/nyud.py``: semseg ``value − 1`` with 0 (unlabeled) → 255 (40-way, as all related work);
depth in metres, 0 = invalid; normals ``2·v/255 − 1`` (PNG) and unit-length, zero vectors invalid
(255 in the target); edges 0/255 → 0/1. Images are padded (centred) to ``pad_size``, default
448x576 for NYUDv2 (fits /16 and /32 backbones; InvPT's size) and 480x640 for NYUD_MT.

``val`` is the standard 654-image test split; SEISM's NYUD ``test_new`` list (the boundary
benchmark of MTI-Net / ATRC / InvPT) is exactly these 654 images, built in as ``seism_test_new``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mtbench.data import transforms
from mtbench.data.base import IGNORE, TASK_SETS, DatasetInfo
from mtbench.data.folder import FolderDataset, names_file
from mtbench.registry import register_dataset

CLASS_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat", "clothes",
    "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain", "box", "whiteboard",
    "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture",
    "otherprop",
)
TASKS = TASK_SETS["nyud"]
SPLITS = ("train", "val")
SPLIT_SIZES = {"train": 795, "val": 654}
EDGE_MAX_DIST = 0.011
DEFAULT_PAD = {"NYUDv2": (448, 576), "NYUD_MT": (480, 640)}
EXTENSIONS = {"NYUDv2": {"image": ".png", "normals": ".png", "edge": ".png"},
              "NYUD_MT": {"image": ".jpg", "normals": ".npy", "edge": ".npy"}}
FOLDERS = {"image": "images", "semseg": "segmentation", "depth": "depth", "normals": "normals", "edge": "edge"}
OPTIONS = ("data_dir", "pad_size", "variant", "edge_eval_ids", "cache_dir") + transforms.AUGMENT_KEYS
# SEISM gt_sets/NYUD/test_new.txt (654 ids, as ranges): the NYUv2 test split.
SEISM_TEST_NEW = (
    (1, 2), (9, 9), (14, 18), (21, 21), (28, 43), (46, 47), (56, 57), (59, 63), (76, 79), (84, 91), (117, 119),
    (125, 129), (131, 134), (137, 137), (153, 155), (167, 169), (171, 176), (180, 202), (207, 212), (220, 222),
    (250, 250), (264, 264), (271, 273), (279, 285), (296, 302), (310, 312), (315, 317), (325, 335), (351, 352),
    (355, 364), (384, 390), (395, 397), (411, 414), (430, 435), (441, 448), (462, 466), (469, 477), (508, 513),
    (515, 526), (531, 533), (537, 539), (549, 551), (555, 571), (579, 583), (591, 594), (603, 607), (612, 613),
    (617, 621), (633, 638), (644, 645), (650, 651), (656, 658), (663, 664), (668, 673), (676, 681), (686, 690),
    (693, 694), (697, 699), (706, 713), (717, 718), (724, 728), (731, 734), (743, 744), (759, 787), (800, 804),
    (810, 814), (821, 823), (833, 846), (850, 852), (857, 862), (869, 871), (906, 908), (917, 919), (926, 928),
    (932, 935), (945, 947), (959, 962), (965, 967), (970, 977), (991, 995), (1001, 1004), (1010, 1012),
    (1021, 1023), (1032, 1034), (1038, 1039), (1048, 1049), (1052, 1053), (1057, 1058), (1075, 1084),
    (1088, 1096), (1098, 1104), (1106, 1109), (1117, 1119), (1123, 1131), (1135, 1136), (1144, 1158),
    (1162, 1167), (1170, 1171), (1174, 1176), (1179, 1184), (1192, 1196), (1201, 1212), (1216, 1220),
    (1226, 1230), (1233, 1235), (1247, 1250), (1254, 1265), (1275, 1280), (1285, 1295), (1297, 1299),
    (1302, 1308), (1314, 1315), (1329, 1332), (1335, 1340), (1347, 1349), (1353, 1356), (1364, 1365),
    (1368, 1369), (1384, 1391), (1394, 1401), (1407, 1414), (1421, 1424), (1430, 1433), (1441, 1449),
)
BUILTIN_EDGE_IDS = {"seism_test_new": tuple(f"{i:04d}" for a, b in SEISM_TEST_NEW for i in range(a, b + 1))}

LAYOUT = """expected a NYUD-v2 folder (give it, or its parent, as --data-dir), either
  NYUDv2/    the ATRC / InvPT / MQTransformer download (NYUDv2.tar.gz)
    gt_sets/train.txt, gt_sets/val.txt   795 / 654 ids, one per line
    images/<id>.png          RGB, 425x560
    segmentation/<id>.png    0 = unlabeled, 1..40 = NYUv2-40 classes
    depth/<id>.npy           float metres, 0 = invalid
    normals/<id>.png         RGB, n = 2*v/255 - 1
    edge/<id>.png            0 / 255
or
  NYUD_MT/   the MTI-Net / ASTMT tarball (NYUD_MT.tgz)
    gt_sets/train.txt, gt_sets/val.txt
    images/<id>.jpg          RGB, 480x640
    segmentation/<id>.png
    depth/<id>.npy, normals/<id>.npy, edge/<id>.npy"""


@dataclass(frozen=True)
class Layout:
    root: Path
    variant: str  # "NYUDv2" or "NYUD_MT"

    def path(self, kind: str, image_id: str) -> Path:
        ext = EXTENSIONS[self.variant].get(kind, ".npy" if kind == "depth" else ".png")
        return self.root / FOLDERS[kind] / f"{image_id}{ext}"

    def split_file(self, split: str) -> Path:
        return self.root / "gt_sets" / f"{split}.txt"


def find_layout(data_dir: str | Path | None, variant: str = "auto") -> Layout:
    """The dataset root under ``data_dir`` (itself or ``NYUDv2/`` / ``NYUD_MT/`` inside it)."""
    if not data_dir:
        raise ValueError(f"the nyud dataset needs --data-dir.\n{LAYOUT}")
    base = Path(data_dir).expanduser()
    for root in (base, base / "NYUDv2", base / "NYUD_MT"):
        if (root / "gt_sets").is_dir() and (root / "images").is_dir():
            found = _detect_variant(root)
            if variant not in ("auto", found):
                raise ValueError(f"{root} holds the {found} layout, but variant '{variant}' was asked for.\n{LAYOUT}")
            return Layout(root, found)
    raise FileNotFoundError(f"no NYUD-v2 data under {base} (no gt_sets/ and images/ there).\n{LAYOUT}")


def _detect_variant(root: Path) -> str:
    for split in SPLITS:
        ids = read_ids(root / "gt_sets" / f"{split}.txt") if (root / "gt_sets" / f"{split}.txt").is_file() else []
        for variant, ext in (("NYUDv2", ".png"), ("NYUD_MT", ".jpg")):
            if ids and (root / "images" / f"{ids[0]}{ext}").is_file():
                return variant
    return "NYUD_MT" if next((root / "images").glob("*.jpg"), None) else "NYUDv2"


def read_ids(path: Path) -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


# ------------------------------------------------------------ raw files (shared with `data check`)
@names_file
def read_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@names_file
def read_semseg(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        x = np.asarray(im)
    if x.ndim != 2 or x.max(initial=0) > len(CLASS_NAMES):
        raise ValueError(f"{path}: expected a 2-D label map with values 0..{len(CLASS_NAMES)}, "
                         f"got shape {x.shape}, max {x.max(initial=0)}")
    return x


@names_file
def read_depth(path: Path) -> np.ndarray:
    x = np.squeeze(np.load(path, allow_pickle=False)).astype(np.float32)
    if x.ndim != 2 or not np.isfinite(x).all() or (x < 0).any():
        raise ValueError(f"{path}: expected finite non-negative 2-D depth in metres, shape {x.shape}")
    return x


@names_file
def read_normals(path: Path) -> np.ndarray:
    """Decoded vectors in [-1, 1] (PNG: 2·v/255 − 1), not yet unit-normalised."""
    if path.suffix == ".npy":
        x = np.load(path, allow_pickle=False).astype(np.float32)
    else:
        with Image.open(path) as im:
            x = 2.0 * np.asarray(im.convert("RGB"), np.float32) / 255.0 - 1.0
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"{path}: expected HxWx3 normals, got shape {x.shape}")
    return x


@names_file
def read_edge(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        x, on = np.squeeze(np.load(path, allow_pickle=False)), 1
    else:
        with Image.open(path) as im:
            x, on = np.asarray(im.convert("L")), 255
    if x.ndim != 2 or not np.isin(x, (0, on)).all():
        raise ValueError(f"{path}: expected a 2-D 0/{on} edge map, got shape {x.shape}, values {np.unique(x)[:6]}")
    return (x == on).astype(np.uint8)


READERS = {"image": read_image, "semseg": read_semseg, "depth": read_depth, "normals": read_normals, "edge": read_edge}
SOURCES = tuple(READERS)


def read_source(layout: Layout, kind: str, image_id: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """One raw file, decoded (the interface ``data check`` uses for every dataset)."""
    return READERS[kind](layout.path(kind, image_id))


class NYUD(FolderDataset):
    """The sample contract of ``mtbench.data.base``; semseg is always read, as ATRC does, because
    the training crop's ``cat_max_ratio`` test needs it whatever the task set."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.info = dataset_info(self.tasks, self.pad_size)

    def raw(self, index: int) -> dict[str, np.ndarray]:
        image_id = self.ids[index]
        image = read_image(self.layout.path("image", image_id))
        semseg = read_semseg(self.layout.path("semseg", image_id))
        raw = {"image": image, "semseg": np.where(semseg == 0, IGNORE, semseg - 1).astype(np.uint8)}
        if "depth" in self.tasks:
            raw["depth"] = read_depth(self.layout.path("depth", image_id))
        if "normals" in self.tasks:
            raw["normals"] = transforms.unit_normals(read_normals(self.layout.path("normals", image_id)))
        if "edge" in self.tasks:
            raw["edge"] = read_edge(self.layout.path("edge", image_id))
        for key, x in raw.items():
            if x.shape[:2] != image.shape[:2]:
                raise ValueError(f"{self.layout.path(key, image_id)}: {x.shape[:2]} does not match the image "
                                 f"{image.shape[:2]}")
        return raw


def dataset_info(tasks: tuple[str, ...], pad_size: tuple[int, int]) -> DatasetInfo:
    """``image_size`` is the padded input size: what the model sees (ViT position embeddings)."""
    return DatasetInfo(name="nyud", tasks=tuple(tasks), num_classes={"semseg": len(CLASS_NAMES)},
                       class_names={"semseg": CLASS_NAMES}, edge_max_dist=EDGE_MAX_DIST,
                       image_size=tuple(pad_size), loss_weight_profile="nyud")


def resolve_edge_eval_ids(spec: str | None, ids: list[str], builtin: dict[str, tuple[str, ...]]) -> list[str] | None:
    """None (all images), a built-in list name, or a text file of ids (one per line)."""
    if not spec:
        return None
    if spec in builtin:
        wanted = list(builtin[spec])
    elif Path(spec).expanduser().is_file():
        wanted = read_ids(Path(spec).expanduser())
    else:
        raise FileNotFoundError(f"edge_eval_ids '{spec}': neither a file nor a built-in list "
                                f"({', '.join(builtin) or 'none for this dataset'})")
    known = set(ids)
    missing = [i for i in wanted if i not in known]
    if missing:
        raise ValueError(f"edge_eval_ids '{spec}': {len(missing)} id(s) not in the split, e.g. {missing[:5]}")
    return wanted


def _options(cfg: dict | None) -> dict:
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown nyud dataset option(s) {sorted(unknown)}; valid: {sorted(OPTIONS)}")
    return cfg


@register_dataset("nyud")
def build(split: str, tasks: tuple[str, ...], cfg: dict | None = None) -> NYUD:
    """cfg: data_dir (required), pad_size [h, w], variant (auto | NYUDv2 | NYUD_MT), edge_eval_ids
    (file or 'seism_test_new'; val split only), augment, scale_range, cat_max_ratio, flip_prob,
    photometric."""
    cfg, tasks = _options(cfg), tuple(tasks)
    bad = [t for t in tasks if t not in TASKS]
    if split not in SPLITS or bad:
        raise ValueError(f"nyud: split must be one of {SPLITS} and tasks among {TASKS}; got '{split}', {list(tasks)}")
    layout = find_layout(cfg.get("data_dir"), cfg.get("variant", "auto"))
    if not layout.split_file(split).is_file():
        raise FileNotFoundError(f"missing {layout.split_file(split)}.\n{LAYOUT}")
    ids = read_ids(layout.split_file(split))
    pad = transforms.parse_size(cfg.get("pad_size"), DEFAULT_PAD[layout.variant])
    edge_ids = resolve_edge_eval_ids(cfg.get("edge_eval_ids"), ids, BUILTIN_EDGE_IDS) if split == "val" else None
    return NYUD(split, tasks, layout, ids, pad, transforms.augment_from_cfg(cfg), edge_ids)


def static_info(tasks: tuple[str, ...], cfg: dict | None = None) -> DatasetInfo:
    """No file access, so the variant is known only from cfg: NYUDv2's 448x576 unless ``pad_size``
    or ``variant: NYUD_MT`` says otherwise."""
    cfg = _options(cfg)
    default = DEFAULT_PAD.get(cfg.get("variant", "auto"), DEFAULT_PAD["NYUDv2"])
    return dataset_info(tuple(tasks), transforms.parse_size(cfg.get("pad_size"), default))


def pad_size(layout: Layout, cfg: dict | None) -> tuple[int, int]:
    return transforms.parse_size((cfg or {}).get("pad_size"), DEFAULT_PAD[layout.variant])


def split_size(split: str, cfg: dict | None) -> int:
    """Images in a split, from its id list alone (checked against the batch size before any run)."""
    cfg = _options(cfg)
    layout = find_layout(cfg.get("data_dir"), cfg.get("variant", "auto"))
    if not layout.split_file(split).is_file():
        raise FileNotFoundError(f"missing {layout.split_file(split)}.\n{LAYOUT}")
    return len(read_ids(layout.split_file(split)))


def size_hint(size: tuple[int, int], pad: tuple[int, int]) -> str:
    """Why an image does not fit ``pad_size``, and the fix (data check and the grid's pre-flight say it)."""
    if tuple(size) == (480, 640):
        return (f"480x640 NYUD images (the Kinect frames with their white border: a widespread re-upload) do not fit "
                f"pad_size {pad[0]}x{pad[1]}; the released codes expect the 425x560 crop of the ATRC/InvPT "
                f"NYUDv2.tar.gz. Fix: use that download, or pad to the full frame with --set "
                f"datasets.nyud.pad_size=[480,640] (numbers then include the border and are not comparable to the "
                f"papers')")
    return f"images of {size[0]}x{size[1]} do not fit pad_size {pad[0]}x{pad[1]}: set datasets.nyud.pad_size"


build.static_info = static_info
build.default_tasks = TASKS
build.cfg_keys = OPTIONS
build.split_size = split_size
