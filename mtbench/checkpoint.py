"""Training checkpoints that resume bit-exactly: weights, optimizer, schedule, iteration, RNG."""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtbench.records import current_umask

LAST = "last.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(ckpt_dir: Path, model: torch.nn.Module, optimizer, scheduler, iteration: int, extra: dict | None = None) -> Path:
    """Atomic: a crash while saving leaves the previous checkpoint intact."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "iteration": iteration,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "extra": extra or {},
    }
    fd, tmp = tempfile.mkstemp(dir=ckpt_dir, prefix=".last.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        torch.save(payload, tmp)
        os.replace(tmp, ckpt_dir / LAST)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return ckpt_dir / LAST


def load_latest(ckpt_dir: Path, model: torch.nn.Module, optimizer, scheduler, device: torch.device) -> tuple[int, dict]:
    """Restore the latest checkpoint if there is one; returns (iteration to start at, extra)."""
    path = Path(ckpt_dir) / LAST
    if not path.is_file():
        return 0, {}
    payload = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    set_rng_state(payload["rng"])
    return int(payload["iteration"]), payload.get("extra", {})
