"""Data-parallel runs: one process per device, the recipe's batch is the GLOBAL batch.

Per-device batch = global batch / world size (an error if it does not divide); the schedule
counts global iterations; every rank draws its slice of the same global batch, so N processes ×
batch B/N see exactly the samples (and augmentation seeds) of 1 process × batch B. Only rank 0
writes checkpoints and records; evaluators sum their state across ranks before ``compute``.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def context() -> DistContext:
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistContext()


def per_device_batch(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        raise ValueError(f"the recipe's batch_size {global_batch} is the global batch and must divide by the "
                         f"{world_size} processes; pick a batch size that is a multiple of {world_size}")
    return global_batch // world_size


def prepare_model(model: torch.nn.Module, device: torch.device, sync_bn: bool, find_unused: bool) -> torch.nn.Module:
    """SyncBN conversion (when the recipe asks) and the DDP wrapper; identity for one process."""
    ctx = context()
    if not ctx.enabled:
        return model
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("sync_bn needs CUDA devices (torch's SyncBatchNorm is GPU-only); set sync_bn: false "
                             "for a CPU run")
        model = to_sync_bn(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def to_sync_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Every BatchNorm becomes a SyncBatchNorm (statistics over the global batch, as the papers' recipes)."""
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if context().enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if context().enabled:
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's object on every rank."""
    if not context().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any] | None:
    """Every rank's object, on rank 0 only (None elsewhere)."""
    ctx = context()
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def device_names(device: torch.device) -> list[str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu@{socket.gethostname()}"
    names = gather_objects(name)
    return broadcast_object(names)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
