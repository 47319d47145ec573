"""PASCAL-Part person annotations (``human_parts/<id>.mat``) → the 7-class human-parts map.

The rules are those of ASTMT ``pascal_context.py`` as copied by MTI-Net, ATRC and InvPT
(``HUMAN_PART[6]``, ``_load_human_parts``, ``_preprocess_parts`` with ``area_thres`` 0):

* an image "has human parts" when one of its objects is a person (``class_ind`` 15) with a
  non-empty mask; otherwise the map is all 0, which the ignore step turns into all 255;
* every person object that has parts is rasterised, objects and parts in file order, a later
  part overwriting an earlier one; pixels of no part (inside or outside the person) are 0;
* the 24 PASCAL-Part person part names map to 6 classes + background as below.

The ``.mat`` holds ``anno`` (1x1 struct: ``imname``, ``objects``); ``objects`` is a 1xN struct
array with ``class``, ``class_ind``, ``mask`` (HxW uint8) and ``parts``, a 1xM struct array with
``part_name`` and ``mask``, or an empty matrix when the object has no parts.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

PERSON_CLASS_IND = 15
PART_NAMES = ("background", "head", "torso", "uarm", "larm", "uleg", "lleg")
# ASTMT HUMAN_PART[6]: head (+hair, ears, eyes, eyebrows, nose, mouth), torso (+neck),
# upper arm, lower arm + hand, upper leg, lower leg + foot.
PART_TO_CLASS = {
    **{name: 1 for name in ("hair", "head", "lear", "lebrow", "leye", "mouth", "nose", "rear", "rebrow", "reye")},
    "neck": 2, "torso": 2,
    "luarm": 3, "ruarm": 3,
    "lhand": 4, "llarm": 4, "rhand": 4, "rlarm": 4,
    "luleg": 5, "ruleg": 5,
    "lfoot": 6, "llleg": 6, "rfoot": 6, "rlleg": 6,
}


def _field(record: np.void, name: str, path: Path):
    try:
        return record[name]
    except (KeyError, ValueError, IndexError) as e:
        raise ValueError(f"{path}: PASCAL-Part struct has no field '{name}'") from e


def _objects(path: Path) -> np.ndarray:
    mat = scipy.io.loadmat(str(path))
    if "anno" not in mat:
        raise ValueError(f"{path}: no 'anno' variable (not a PASCAL-Part annotation)")
    objects = _field(mat["anno"][0, 0], "objects", path)
    return objects.reshape(-1) if objects.size else objects.reshape(0)


def rasterise(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) map: 0 background, 1..6 parts; all 0 when no person has parts."""
    path = Path(path)
    target = np.zeros(shape, np.uint8)
    objects = _objects(path)
    is_person = [int(np.ravel(_field(o, "class_ind", path))[0]) == PERSON_CLASS_IND for o in objects]
    if not any(p and np.asarray(_field(o, "mask", path)).any() for o, p in zip(objects, is_person)):
        return target
    for obj, person in zip(objects, is_person):
        parts = _field(obj, "parts", path)
        if not person or parts.size == 0:
            continue
        for part in parts.reshape(-1):
            name = str(np.ravel(_field(part, "part_name", path))[0])
            if name not in PART_TO_CLASS:
                raise ValueError(f"{path}: unknown person part name '{name}'")
            mask = np.asarray(_field(part, "mask", path)).astype(bool)
            if mask.shape != tuple(shape):
                raise ValueError(f"{path}: part mask {mask.shape} does not match the image {tuple(shape)}")
            target[mask] = PART_TO_CLASS[name]
    return target
