"""Datasets read from image folders: raw arrays → the shared pipeline → the sample contract.

Every error while reading a sample names the file (``names_file`` on each reader): a truncated JPEG at iteration
30k must say which one, not ``OSError: image file is truncated``.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

from mtbench.data import transforms


class DataFileError(ValueError):
    """A dataset file that cannot be read or does not hold what it should; the message starts with its path."""


def names_file(reader: Callable[..., Any]) -> Callable[..., Any]:
    """``reader(path, ...)`` whose errors (decoder errors included) start with the path."""
    @functools.wraps(reader)
    def read(path: str | Path, *args: Any, **kwargs: Any) -> Any:
        try:
            return reader(path, *args, **kwargs)
        except DataFileError:
            raise
        except Exception as e:  # noqa: BLE001 — any decoder error, with the file named
            text = str(e)
            raise DataFileError(text if str(path) in text else f"{path}: {type(e).__name__}: {text}") from e

    return read


class FolderDataset(Dataset):
    """Subclasses set ``info`` and implement ``raw(index)`` (the unaugmented arrays of one image)."""

    def __init__(self, split: str, tasks: tuple[str, ...], layout: Any, ids: list[str], pad_size: tuple[int, int],
                 augment: transforms.Augment | None, edge_eval_ids: list[str] | None):
        self.split, self.tasks, self.layout, self.ids = split, tuple(tasks), layout, ids
        self.pad_size, self.augment = pad_size, augment
        self.edge_eval_ids = edge_eval_ids  # boundary scoring restricted to these ids (None: all)

    def raw(self, index: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """An int: evaluation (normalise + pad). ``(index, sample_seed)``: training augmentation."""
        index, seed = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        try:
            arrays, size, offset = transforms.prepare(self.raw(index), self.pad_size, seed, self.augment)
        except DataFileError:
            raise
        except ValueError as e:  # e.g. an image larger than pad_size
            raise DataFileError(f"{self.layout.path('image', self.ids[index])}: {e}") from e
        item = transforms.to_tensors({k: v for k, v in arrays.items() if k == "image" or k in self.tasks})
        item["meta"] = {"id": self.ids[index], "size": size, "offset": offset}
        return item
