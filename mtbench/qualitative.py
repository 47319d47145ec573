"""The qualitative images of a run: K fixed validation images (the same ids for every run of a dataset split),
with the input, each task's ground truth and prediction, so that the report needs only the results directory.

``runs/<id>/qualitative/<image id>/``: ``image.png`` (the input at native size, de-normalised), and per task
``<task>`` + suffix (the prediction) and ``<task>.gt`` + suffix (the target), written by
``mtbench.prediction_io`` (lossless; a few hundred kB per run at NYUD's size).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mtbench import prediction_io
from mtbench.atomic import atomic_write
from mtbench.data.base import IMAGENET_MEAN, IMAGENET_STD
from mtbench.task import Task

#: images per run: the first K of the validation split, in the dataset's order
K = 4
DIR_NAME = "qualitative"
IMAGE_NAME = "image.png"


def fixed_ids(dataset: Any, k: int = K) -> frozenset[str]:
    """The ids of the first ``k`` validation images: the same for every run that reads this split."""
    ids = getattr(dataset, "ids", None)
    if ids is not None:
        return frozenset(list(ids)[:k])
    return frozenset(dataset[i]["meta"]["id"] for i in range(min(k, len(dataset))))


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """A normalised (3, H, W) input back to 8-bit RGB (every dataset normalises with ImageNet statistics)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    rgb = (image.detach().float().cpu() * std + mean).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def save(out_dir: Path, batch: dict[str, Any], preds: dict[str, torch.Tensor], tasks: dict[str, Task],
         ids: frozenset[str], crop) -> None:
    """Write the images of ``batch`` whose id is in ``ids``; ``crop(x, meta)`` undoes the padding."""
    for i, meta in enumerate(batch["meta"]):
        if meta["id"] not in ids:
            continue
        d = Path(out_dir) / str(meta["id"])
        rgb = to_rgb(crop(batch["image"][i], meta))
        atomic_write(d / IMAGE_NAME, lambda f, a=rgb: Image.fromarray(a).save(f, format="PNG"))
        for t, task in tasks.items():
            if not task.prediction_kind or t not in preds:
                continue
            pred = crop(preds[t][i], meta).detach().float().cpu().numpy()
            target = crop(batch[t][i], meta).detach().cpu().numpy()
            prediction_io.write(task.prediction_kind, pred, d / t)
            prediction_io.write(task.prediction_kind, target, d / f"{t}.gt", target=True)
