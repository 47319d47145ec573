"""Reading boundary predictions and ground truth in the formats the benchmarks ship.

Ground truth ``<id>.mat``: the BSDS ``groundTruth`` cell (one entry per annotator, fields
``Segmentation`` and ``Boundaries``), SBD's ``GTcls`` (``Boundaries``: a cell of one sparse map per
class, ``Segmentation``: class per pixel) or ``GTinst`` (``Segmentation``: instance per pixel,
``Boundaries``: one sparse map per instance, ``Categories``: class per instance), or a
PASCAL-Context ``LabelMap``; ``<id>.png`` / ``<id>.npy``: one edge or label map (NYUD). A protocol
that derives boundaries from labels (SEISM) gets label maps, the others boundary maps.

Predictions ``<id>.png`` / ``.bmp`` (8-bit, prob = value / 255), ``<id>.npy`` (float in [0, 1] or
uint8) or ``<id>.mat`` (one 2-D numeric variable, same rule). Nothing here can execute code from a
file: ``np.load(allow_pickle=False)`` and ``scipy.io.loadmat``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from mtbench.metrics.boundary_protocol import seg2bmap

PRED_SUFFIXES = (".png", ".bmp", ".npy", ".mat")
GT_SUFFIXES = (".mat", ".png", ".npy")


class BoundaryInputError(ValueError):
    """A problem with the input files, reported to the user without a traceback."""


@dataclass
class GroundTruth:
    maps: list[np.ndarray]  # per annotator: label maps or boundary maps, as asked
    segment: np.ndarray | None  # the class's own segment (SBD), for kill_internal


def _find(folder: Path, image_id: str, suffixes: tuple[str, ...]) -> Path:
    for suffix in suffixes:
        path = folder / f"{image_id}{suffix}"
        if path.is_file():
            return path
    raise BoundaryInputError(f"no {'/'.join(suffixes)} file for '{image_id}' in {folder}")


def _image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode not in ("L", "P", "1"):
            raise BoundaryInputError(f"{path}: expected an 8-bit single-channel image, got mode {im.mode}")
        return np.asarray(im.convert("L") if im.mode == "1" else im)


def _numeric_2d(x: np.ndarray, path: Path, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise BoundaryInputError(f"{path}: expected a 2-D numeric {what}, got {x.dtype} of shape {x.shape}")
    return x


def _loadmat(path: Path) -> dict:
    try:
        return scipy.io.loadmat(path)
    except (ValueError, NotImplementedError, OSError) as e:  # e.g. MATLAB v7.3 (HDF5) files
        raise BoundaryInputError(f"{path}: cannot read as a MATLAB v5 .mat file ({e})") from None


def load_prediction(folder: Path, image_id: str) -> np.ndarray:
    """uint8 (value / 255) or float probabilities in [0, 1], (H, W)."""
    path = _find(folder, image_id, PRED_SUFFIXES)
    if path.suffix in (".png", ".bmp"):
        return _image(path)
    if path.suffix == ".npy":
        x = _numeric_2d(np.load(path, allow_pickle=False), path, "prediction")
    else:
        data = {k: v for k, v in _loadmat(path).items() if not k.startswith("__")}
        arrays = [v for v in data.values() if isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype != object]
        if len(arrays) != 1:
            raise BoundaryInputError(f"{path}: expected exactly one 2-D numeric variable, found {sorted(data)}")
        x = _numeric_2d(arrays[0], path, "prediction")
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float64)
    if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any()):
        raise BoundaryInputError(f"{path}: float predictions must lie in [0, 1] (or be uint8 0..255)")
    return x


def _field(struct: np.ndarray, name: str, path: Path) -> np.ndarray:
    if struct.dtype.names is None or name not in struct.dtype.names:
        raise BoundaryInputError(f"{path}: struct has no field '{name}' (fields: {struct.dtype.names})")
    return struct[name][0, 0] if struct.shape == (1, 1) else struct[name]


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x).astype(bool)


def load_ground_truth(folder: Path, image_id: str, labels: bool, category: int | None = None) -> GroundTruth:
    """Annotator maps for one image: label maps if ``labels`` (SEISM), else boundary maps."""
    path = _find(folder, image_id, GT_SUFFIXES)
    if path.suffix == ".png":
        m = _image(path)
        return GroundTruth([m if labels else m > 0], None)
    if path.suffix == ".npy":
        m = _numeric_2d(np.load(path, allow_pickle=False), path, "ground truth")
        return GroundTruth([m if labels else m > 0], None)
    data = _loadmat(path)
    if "groundTruth" in data:
        cell = data["groundTruth"]
        entries = [cell.flat[k] for k in range(cell.size)]
        key = "Segmentation" if labels else "Boundaries"
        return GroundTruth([np.asarray(_field(e, key, path)) if labels else _dense(_field(e, key, path))
                            for e in entries], None)
    if "GTcls" in data or "GTinst" in data:
        if category is None:
            raise BoundaryInputError(f"{path}: SBD ground truth needs a class index (--class 1..20)")
        return _sbd(data, path, category, labels)
    if "LabelMap" in data:
        lab = _numeric_2d(data["LabelMap"], path, "label map")
        return GroundTruth([lab if labels else seg2bmap(lab)], None)
    keys = sorted(k for k in data if not k.startswith("__"))
    raise BoundaryInputError(f"{path}: no 'groundTruth', 'GTcls', 'GTinst' or 'LabelMap' variable (found {keys})")


def _sbd(data: dict, path: Path, category: int, labels: bool) -> GroundTruth:
    """SEISM's ``db_gt(.., 'cls' | 'inst', c)`` (labels) or the SBD benchmark's class boundaries."""
    if "GTcls" in data:
        gt = data["GTcls"]
        seg = np.asarray(_field(gt, "Segmentation", path))
        bounds = _field(gt, "Boundaries", path)
        if not 1 <= category <= bounds.size:
            raise BoundaryInputError(f"{path}: class {category} out of range 1..{bounds.size}")
        segment = seg == category
        if labels:
            return GroundTruth([segment.astype(np.uint8)], segment)
        return GroundTruth([_dense(bounds.flat[category - 1])], segment)
    gt = data["GTinst"]
    seg = np.asarray(_field(gt, "Segmentation", path))
    cats = np.asarray(_field(gt, "Categories", path)).ravel()
    bounds = _field(gt, "Boundaries", path)
    ids = [k + 1 for k, c in enumerate(cats) if int(c) == category]
    segment = np.isin(seg, ids)
    if labels:
        return GroundTruth([np.where(segment, seg, 0)], segment)
    edge = np.zeros(seg.shape, dtype=bool)
    for k in ids:
        edge |= _dense(bounds.flat[k - 1])
    return GroundTruth([edge], segment)
