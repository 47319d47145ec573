"""Datasets read from image folders: raw arrays → the shared pipeline → the sample contract."""
from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from mtbench.data import transforms


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
        arrays, size, offset = transforms.prepare(self.raw(index), self.pad_size, seed, self.augment)
        item = transforms.to_tensors({k: v for k, v in arrays.items() if k == "image" or k in self.tasks})
        item["meta"] = {"id": self.ids[index], "size": size, "offset": offset}
        return item
