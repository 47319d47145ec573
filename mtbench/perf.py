"""Speed options a recipe may turn on: ``perf.channels_last``, ``perf.compile``, ``perf.tf32`` and
``optimizer.fused`` (in ``mtbench.optim``). All are off by default and then leave run ids unchanged
(``config.HASH_NEUTRAL``); each changes results only at float rounding level, which is why a run that sets one
gets its own id. ``benchmarks/gpu_check.py`` measures each with and without, per method.

- ``channels_last``: weights and input images in NHWC, which cuDNN's convolution kernels prefer under bf16.
- ``compile``: ``torch.compile`` of the training forward (the evaluation forward stays eager: its last batch
  has another size, which would compile a second graph for one batch).
- ``tf32``: fp32 matmuls on TensorFloat-32 cores (convolutions already use them by torch's default). No effect
  under bf16 autocast, nor on the CPU.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

_TORCH_DEFAULTS: dict[str, str] = {}  # the fp32 precisions torch started with, restored when tf32 is off


def options(recipe: dict[str, Any]) -> dict[str, bool]:
    perf = recipe.get("perf") or {}
    return {k: bool(perf.get(k, False)) for k in ("channels_last", "compile", "tf32")}


def configure_tf32(enabled: bool) -> None:
    """Per run (runs share a process under the local executor): TF32 on, or back to torch's defaults.
    Only torch's new precision API is used: mixing it with ``allow_tf32`` is an error in torch ≥ 2.9."""
    flags = {"matmul": torch.backends.cuda.matmul, "conv": torch.backends.cudnn.conv}
    if not _TORCH_DEFAULTS:
        _TORCH_DEFAULTS.update({name: flag.fp32_precision for name, flag in flags.items()})
    for name, flag in flags.items():
        flag.fp32_precision = "tf32" if enabled else _TORCH_DEFAULTS[name]


def prepare_model(model: torch.nn.Module, recipe: dict[str, Any]) -> torch.nn.Module:
    """The model in the recipe's memory format (in place, as ``Module.to`` is)."""
    if options(recipe)["channels_last"]:
        model.to(memory_format=torch.channels_last)
    return model


def prepare_input(images: torch.Tensor, recipe: dict[str, Any]) -> torch.Tensor:
    if options(recipe)["channels_last"]:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def training_forward(net: torch.nn.Module, recipe: dict[str, Any]) -> Callable[[torch.Tensor], Any]:
    """What the training step calls: the module, or its compiled version (sharing its parameters, so
    checkpoints and evaluation see the same weights)."""
    return torch.compile(net) if options(recipe)["compile"] else net


def describe(recipe: dict[str, Any]) -> dict[str, bool]:
    """For the run record: the speed options in force, ``optimizer.fused`` included."""
    return {**options(recipe), "fused_optimizer": bool((recipe.get("optimizer") or {}).get("fused", False))}
