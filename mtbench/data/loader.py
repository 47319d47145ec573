"""Loaders whose sample order is a pure function of (seed, iteration).

That is what makes resume exact: after a crash at iteration k the loader restarts at the batch
of iteration k without replaying the earlier ones, and every process agrees on the order.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; keep ``meta`` as a list of per-image dicts (ids and native sizes vary)."""
    out: dict[str, Any] = {"meta": [s["meta"] for s in samples]}
    for key in samples[0]:
        if key != "meta":
            out[key] = torch.stack([torch.as_tensor(s[key]) for s in samples])
    return out


def sample_seed(seed: int, iteration: int, position: int) -> int:
    """The augmentation seed of one sample: a pure function of where it sits in training."""
    return (seed * 1_000_003 + iteration * 1_009 + position) % (2**63 - 1)


class IterationBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches for iterations [start, total): epoch e is a permutation seeded by (seed, e).

    Items are ``(index, sample_seed)``: datasets draw their random augmentation from
    ``sample_seed`` (never from worker RNG state), so a resumed run sees identical crops/flips.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, total: int, rank: int = 0, world_size: int = 1):
        if n < batch_size:
            raise ValueError(f"the training split has {n} images, fewer than the batch size {batch_size}")
        self.n, self.batch_size, self.seed, self.start, self.total = n, batch_size, seed, start, total
        self.per_epoch = n // batch_size  # drop_last: every batch is full
        # Data parallel: batch_size is the global batch; this rank takes its contiguous slice.
        self.lo, self.hi = rank * batch_size // world_size, (rank + 1) * batch_size // world_size

    def _perm(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, perm = -1, None
        for it in range(self.start, self.total):
            e, pos = divmod(it, self.per_epoch)
            if e != epoch:
                epoch, perm = e, self._perm(e)
            idx = perm[pos * self.batch_size:(pos + 1) * self.batch_size].tolist()
            yield [(i, sample_seed(self.seed, it, k)) for k, i in enumerate(idx)][self.lo:self.hi]

    def __len__(self) -> int:
        return max(0, self.total - self.start)


def train_loader(ds: Dataset, batch_size: int, seed: int, start: int, total: int,
                 num_workers: int, pin_memory: bool, rank: int = 0, world_size: int = 1) -> DataLoader:
    """``batch_size`` is the global batch; with ``world_size`` > 1 each rank loads its slice."""
    sampler = IterationBatchSampler(len(ds), batch_size, seed, start, total, rank, world_size)
    return DataLoader(ds, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate,
                      pin_memory=pin_memory, persistent_workers=False,
                      prefetch_factor=4 if num_workers > 0 else None)


def eval_loader(ds: Dataset, batch_size: int, num_workers: int, pin_memory: bool,
                rank: int = 0, world_size: int = 1) -> DataLoader:
    """Rank r scores images r, r+N, r+2N, …: every image exactly once, whatever the split size."""
    if world_size > 1:
        ds = Subset(ds, range(rank, len(ds), world_size))
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate, pin_memory=pin_memory, drop_last=False)
