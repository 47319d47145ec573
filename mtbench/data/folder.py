"""Datasets read from image folders: raw arrays → the shared pipeline → the sample contract."""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from mtbench.data import transforms


class FolderDataset(Dataset):
    """Subclasses set ``ids``, ``tasks``, ``pad_size``, ``augment`` and implement ``raw(index)``."""

    ids: list[str]
    tasks: tuple[str, ...]

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
