"""Predictions and targets on disk, in the form the evaluators and the released pipelines read them.

One writer for the evaluation's qualitative images and for ``bench.py predict``, keyed by a task's
``prediction_kind``:

- ``labels`` (semseg, human parts): 8-bit PNG of class ids (16-bit where a dataset has more than 255 classes);
  255 = ignore in targets. Lossless.
- ``depth``: ``.npy`` float32 (H, W) in metres; 0 = invalid in targets. Lossless.
- ``normals``: ``.npy`` float32 (3, H, W) unit vectors; 255 = invalid in targets. Lossless.
- ``probability`` (edge, saliency): 8-bit PNG truncated as ``(p * 255).astype(np.uint8)`` in float32, exactly
  the files ``eval-boundary`` and the released SEISM/saliency evaluations read. Targets keep their raw values
  (0, 1, 255 = ignore).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mtbench.atomic import atomic_write

KINDS = ("labels", "depth", "normals", "probability")
SUFFIX = {"labels": ".png", "depth": ".npy", "normals": ".npy", "probability": ".png"}


def _png(path: Path, array: np.ndarray) -> Path:
    return atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def _npy(path: Path, array: np.ndarray) -> Path:
    return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def write(kind: str, array: np.ndarray, stem: Path, target: bool = False) -> Path:
    """Write one prediction (or, with ``target``, one ground truth) of ``kind`` as ``stem`` + its suffix."""
    path = Path(str(stem) + SUFFIX[kind])
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.asarray(array)
    if kind == "labels":
        return _png(path, a.astype(np.uint8 if a.max(initial=0) <= 255 else np.uint16))
    if kind in ("depth", "normals"):
        return _npy(path, np.ascontiguousarray(a, dtype=np.float32))
    if kind == "probability":
        if target:
            return _png(path, a.astype(np.uint8))
        return _png(path, (np.clip(a.astype(np.float32), 0, 1) * np.float32(255)).astype(np.uint8))
    raise ValueError(f"unknown prediction kind '{kind}' (known: {', '.join(KINDS)})")


def find(stem: Path) -> Path | None:
    """The file written for ``stem`` (whatever its kind), or None."""
    for suffix in (".png", ".npy"):
        if Path(str(stem) + suffix).is_file():
            return Path(str(stem) + suffix)
    return None


def read(path: Path, kind: str, target: bool = False) -> np.ndarray:
    """Back to the evaluator's scale: labels as ints, depth in m, normals (3, H, W), probabilities in [0, 1]
    (targets of ``probability`` kind keep 0 / 1 / 255)."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    a = np.asarray(Image.open(path))
    if kind == "probability" and not target:
        return a.astype(np.float32) / 255.0
    return a
