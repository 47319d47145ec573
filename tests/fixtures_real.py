"""Tiny NYUD-v2 and PASCAL-Context folders in exactly the real on-disk formats.

Small images (about 40x56) keep the loader tests fast; everything else — file kinds, PNG modes,
``.npy`` dtypes, the PASCAL-Part ``anno`` struct nesting, Context ``LabelMap`` mats, split files —
is what the ATRC / InvPT / MTI-Net downloads contain, so the tests go through the real code paths.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

NYUD_TRAIN, NYUD_VAL = ("0003", "0004", "0005"), ("0001", "0002")
PASCAL_TRAIN, PASCAL_VAL = ("2008_000002", "2008_000003", "2008_000007"), ("2008_000008", "2008_000009", "2008_000015")
# Context LabelMap classes: wall, floor and person are NYU-v2 classes (normals kept there); sky is not.
WALL, FLOOR, SKY, PERSON = 440, 158, 360, 284


def _blocks(rng: np.random.Generator, shape: tuple[int, int], values, block: int = 8) -> np.ndarray:
    """Piecewise-constant map: labels stay meaningful after nearest resizing."""
    gh, gw = -(-shape[0] // block), -(-shape[1] // block)
    coarse = rng.choice(np.asarray(values), size=(gh, gw))
    return np.kron(coarse, np.ones((block, block), coarse.dtype))[: shape[0], : shape[1]]


def _image(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    y, x = np.mgrid[: shape[0], : shape[1]]
    base = np.stack([x * 4, y * 5, (x + y) * 2], -1) % 256
    return (base + rng.integers(0, 30, base.shape)).clip(0, 255).astype(np.uint8)


def _unit_normals(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    n = rng.normal(size=shape + (3,)).astype(np.float32)
    n[..., 2] = np.abs(n[..., 2]) + 0.5
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _encode_normals(n: np.ndarray) -> np.ndarray:
    return np.round((n + 1.0) / 2.0 * 255.0).clip(0, 255).astype(np.uint8)


def _boundaries(labels: np.ndarray) -> np.ndarray:
    e = np.zeros(labels.shape, bool)
    e[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    e[1:, :] |= labels[1:, :] != labels[:-1, :]
    return e


def write_nyud(base: Path, variant: str = "NYUDv2", shape: tuple[int, int] = (40, 56), seed: int = 0) -> Path:
    """A ``NYUDv2`` (PNG images / normals / edges) or ``NYUD_MT`` (JPEG, ``.npy``) folder."""
    rng = np.random.default_rng(seed)
    root = Path(base) / variant
    for sub in ("gt_sets", "images", "segmentation", "depth", "normals", "edge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "gt_sets" / "train.txt").write_text("\n".join(NYUD_TRAIN) + "\n")
    (root / "gt_sets" / "val.txt").write_text("\n".join(NYUD_VAL) + "\n")
    for image_id in NYUD_TRAIN + NYUD_VAL:
        seg = _blocks(rng, shape, np.arange(0, 41, dtype=np.uint8))
        depth = (1.0 + 4.0 * rng.random(shape)).astype(np.float32)
        depth[:4, :6] = 0.0  # invalid
        normals = _unit_normals(rng, shape)
        normals[-5:, -7:] = 0.0  # no normal
        edge = _boundaries(seg)
        if variant == "NYUDv2":
            Image.fromarray(_image(rng, shape)).save(root / "images" / f"{image_id}.png")
            Image.fromarray(_encode_normals(normals)).save(root / "normals" / f"{image_id}.png")
            Image.fromarray((edge * 255).astype(np.uint8)).save(root / "edge" / f"{image_id}.png")
        else:
            Image.fromarray(_image(rng, shape)).save(root / "images" / f"{image_id}.jpg", quality=95)
            np.save(root / "normals" / f"{image_id}.npy", normals)
            np.save(root / "edge" / f"{image_id}.npy", edge.astype(np.float32))
        Image.fromarray(seg).save(root / "segmentation" / f"{image_id}.png")
        np.save(root / "depth" / f"{image_id}.npy", depth)
    return root


def _struct(dtype_names, rows) -> np.ndarray:
    """A 1xN MATLAB struct array as scipy.io.savemat writes it (object fields)."""
    arr = np.zeros((1, len(rows)), dtype=[(n, "O") for n in dtype_names])
    for i, row in enumerate(rows):
        arr[0, i] = row
    return arr


def part_annotation(image_id: str, shape: tuple[int, int], objects: list[dict]) -> dict:
    """PASCAL-Part ``anno``: objects = [{class, class_ind, mask, parts: [(name, mask), ...]}]."""
    rows = []
    for obj in objects:
        parts = (_struct(("part_name", "mask"), [(n, m.astype(np.uint8)) for n, m in obj["parts"]])
                 if obj["parts"] else np.zeros((0, 0)))
        rows.append((obj["class"], np.array([[obj["class_ind"]]], np.uint8), obj["mask"].astype(np.uint8), parts))
    objects_arr = _struct(("class", "class_ind", "mask", "parts"), rows) if rows else np.zeros((0, 0))
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (image_id, objects_arr)
    return {"anno": anno}


def _rect(shape, top, left, h, w) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top:top + h, left:left + w] = True
    return m


def person_objects(shape: tuple[int, int]) -> list[dict]:
    """Two people (the second has overlapping parts) and a dog; expected map in ``expected_parts``."""
    p1 = _rect(shape, 2, 2, 30, 16)
    p2 = _rect(shape, 4, 24, 30, 16)
    dog = _rect(shape, 30, 40, 8, 10)
    return [
        {"class": "person", "class_ind": 15, "mask": p1,
         "parts": [("head", _rect(shape, 2, 6, 6, 8)), ("hair", _rect(shape, 2, 6, 2, 8)),
                   ("torso", _rect(shape, 8, 4, 10, 12)), ("ruarm", _rect(shape, 8, 2, 5, 2)),
                   ("lhand", _rect(shape, 14, 16, 3, 2)), ("llleg", _rect(shape, 24, 4, 8, 4))]},
        {"class": "dog", "class_ind": 12, "mask": dog, "parts": [("head", _rect(shape, 30, 40, 3, 3))]},
        {"class": "person", "class_ind": 15, "mask": p2,
         "parts": [("neck", _rect(shape, 10, 26, 4, 4)), ("luleg", _rect(shape, 12, 26, 6, 4))]},
    ]


def expected_parts(shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    for obj in person_objects(shape):
        if obj["class_ind"] == 15:
            for name, mask in obj["parts"]:
                out[mask] = {"head": 1, "hair": 1, "torso": 2, "neck": 2, "ruarm": 3, "lhand": 4,
                             "luleg": 5, "llleg": 6}[name]
    return out


def write_pascal(base: Path, seed: int = 0, shapes=((40, 56), (48, 40), (36, 52))) -> Path:
    """A ``PASCALContext`` folder; images of varying size (at least 40x56 for the first shape,
    where the people are drawn), one of each human-parts case."""
    rng = np.random.default_rng(seed)
    root = Path(base) / "PASCALContext"
    for sub in ("ImageSets/Context", "JPEGImages", "semseg/VOC12", "semseg/pascal-context", "human_parts",
                "pascal-context/trainval", "normals_distill", "sal_distill"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/Context/train.txt").write_text("\n".join(PASCAL_TRAIN) + "\n")
    (root / "ImageSets/Context/val.txt").write_text("\n".join(PASCAL_VAL) + "\n")
    palette = list(np.random.default_rng(1).integers(0, 256, 768).astype(int))
    for k, image_id in enumerate(PASCAL_TRAIN + PASCAL_VAL):
        shape = tuple(shapes[k % 3])
        Image.fromarray(_image(rng, shape)).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        seg = _blocks(rng, shape, np.array([0, 5, 15, 20], np.uint8))
        seg[_boundaries(seg)] = 255  # VOC's void boundary band
        png = Image.fromarray(seg, mode="P")
        png.putpalette(palette)
        folder = "VOC12" if k % 2 == 0 else "pascal-context"
        png.save(root / "semseg" / folder / f"{image_id}.png")
        labels = np.full(shape, SKY, np.uint16)
        labels[shape[0] // 2:, :] = FLOOR
        labels[: shape[0] // 2, : shape[1] // 3] = WALL
        labels[5:12, 30:38] = PERSON
        scipy.io.savemat(root / "pascal-context/trainval" / f"{image_id}.mat", {"LabelMap": labels})
        case = k % 3  # 0: people with parts, 1: a dog only, 2: a person without parts
        objects = (person_objects(shape) if case == 0 else
                   [{"class": "dog", "class_ind": 12, "mask": _rect(shape, 3, 3, 10, 10), "parts": []}] if case == 1 else
                   [{"class": "person", "class_ind": 15, "mask": _rect(shape, 3, 3, 10, 10), "parts": []}])
        scipy.io.savemat(root / "human_parts" / f"{image_id}.mat", part_annotation(image_id, shape, objects))
        Image.fromarray(_encode_normals(_unit_normals(rng, shape))).save(root / "normals_distill" / f"{image_id}.png")
        Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8)).save(root / "sal_distill" / f"{image_id}.png")
    return root


# ------------------------------------------------------------------ the MTAN preprocessed .npy folders
MTAN_SIZES = {"nyuv2": (288, 384), "cityscapes": (128, 256)}


def write_mtan(base: Path, name: str = "nyuv2", n_train: int = 3, n_val: int = 2, seed: int = 0) -> Path:
    """``nyuv2/`` or ``cityscapes/`` as the MTAN Dropbox folders hold them: ``<split>/<kind>/<i>.npy``, float64
    arrays (the image k/255 in [0, 1], H×W×3; labels H×W with −1 = ignore; depth H×W×1 with 0 = invalid; unit
    normals H×W×3 with a zero-vector patch), at the real resolution."""
    rng = np.random.default_rng(seed)
    shape = MTAN_SIZES[name]
    root = Path(base) / name
    label_dirs = {"nyuv2": {"label": 13}, "cityscapes": {"label_7": 7, "label_19": 19, "label_2": 2}}[name]
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            image = _image(rng, shape).astype(np.float64) / 255.0
            depth = (1.0 + 4.0 * rng.random(shape + (1,)))
            depth[:6, :10] = 0.0  # invalid
            arrays = {"image": image, "depth": depth}
            for folder, classes in label_dirs.items():
                label = _blocks(rng, shape, np.arange(-1, classes)).astype(np.float64)
                arrays[folder] = label
            if name == "nyuv2":
                normals = _unit_normals(rng, shape).astype(np.float64)
                normals[-5:, -7:] = 0.0  # no normal
                arrays["normal"] = normals
            for folder, x in arrays.items():
                (root / split / folder).mkdir(parents=True, exist_ok=True)
                np.save(root / split / folder / f"{i}.npy", x)
    return root
