"""Optimizers and the per-iteration schedules: poly (MTI-Net/ATRC/InvPT/MQT), constant, and step (the MTAN /
LibMTL / Nash-MTL ``StepLR(step_size=100 epochs, gamma=0.5)``, given in iterations)."""
from __future__ import annotations

from typing import Any

import torch


def build_optimizer(model: torch.nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    """``fused: true`` takes torch's one-kernel implementation (same update rule; ``None`` = torch's default
    choice between its loop and multi-tensor versions, as before the option existed)."""
    name, lr, wd = cfg["name"], float(cfg["lr"]), float(cfg.get("weight_decay", 0.0))
    fused = True if cfg.get("fused", False) else None
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg.get("momentum", 0.9)), weight_decay=wd,
                               nesterov=bool(cfg.get("nesterov", False)), fused=fused)
    betas = tuple(cfg.get("betas", (0.9, 0.999)))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd, fused=fused)
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd, fused=fused)


def lr_factor(it: int, total: int, cfg: dict[str, Any]) -> float:
    """Multiplier of the base lr at iteration ``it`` (0-based): linear warm-up, then poly decay."""
    warmup = int(cfg.get("warmup_iters", 0))
    if it < warmup:
        ratio = float(cfg.get("warmup_ratio", 0.1))
        return ratio + (1.0 - ratio) * it / warmup
    if cfg["name"] == "constant":
        return 1.0
    if cfg["name"] == "step":  # lr × gamma^⌊it / step_size⌋
        return float(cfg.get("gamma", 0.1)) ** (it // int(cfg["step_size"]))
    return (1.0 - it / total) ** float(cfg.get("power", 0.9))


def build_scheduler(opt: torch.optim.Optimizer, cfg: dict[str, Any], total: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda it: lr_factor(it, total, cfg))
