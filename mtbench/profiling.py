"""Cost measurements for records and leaderboards: parameters, FLOPs, memory, provenance."""
from __future__ import annotations

import importlib.metadata
import platform
import resource
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def param_counts(model: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    backbone = getattr(model, "backbone", None)
    bb = sum(p.numel() for p in backbone.parameters()) if backbone is not None else 0
    return {"total": total, "backbone": bb, "head": total - bb}


def count_flops(model: torch.nn.Module, image_size: tuple[int, int], device: torch.device) -> dict[str, float]:
    """torch's flop counter on one eval forward, batch 1. A multiply-add counts 2 FLOPs there;
    papers often quote multiply-adds as 'FLOPs', so both are recorded under their own names."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, *image_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    flops = counter.get_total_flops()
    return {"gflops": flops / 1e9, "gmacs": flops / 2e9, "input_size": list(image_size)}


def reset_peak_memory(device: torch.device) -> None:
    """Start a run's peak from now: several runs share one process under the local executor."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux >= 4.0: writing 5 resets the process's peak RSS (VmHWM) to its current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "mb": torch.cuda.max_memory_allocated(device) / 2**20}
    try:
        with open("/proc/self/status") as f:
            hwm = next(line for line in f if line.startswith("VmHWM:"))
        return {"kind": "process_peak_rss_since_run_start", "mb": int(hwm.split()[1]) / 1024}
    except (OSError, StopIteration):
        return {"kind": "process_max_rss", "mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        sha = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "torchjd": _version("torchjd"),
        "timm": _version("timm"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "git_sha": git_sha(),
    }
