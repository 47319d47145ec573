"""Environment workarounds. Everything in mtbench imports timm through :func:`import_timm`.

Why: on machines with a CPU-only torch, pip resolves torchvision to a CUDA build whose compiled ops
cannot load. ``import torchvision`` then dies in ``torchvision/_meta_registrations.py`` with
``RuntimeError: operator torchvision::nms does not exist`` (it registers fake kernels for ops that were
never defined), and timm imports torchvision (FrozenBatchNorm2d, transforms), so ``import timm`` fails
too. Only when that exact error is raised, we declare the missing op *schemas* (no kernels) in a
``torch.library.Library("torchvision", "FRAGMENT")`` and import again. torchvision.ops kernels (nms,
roi_align, ...) stay unavailable, which mtbench does not need. With a matching torch/torchvision pair
the first import succeeds and nothing here runs.
"""
from __future__ import annotations

import re
import sys
from types import ModuleType

# Schemas of the torchvision ops that its Python import touches before any kernel is needed.
_TORCHVISION_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_MISSING_OP = re.compile(r"operator torchvision::(\w+) does not exist")
_fragment = None  # keep the Library object alive: dropping it would undo the definitions


def _forget(prefix: str) -> None:
    for mod in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[mod]


def _import_torchvision() -> None:
    global _fragment
    import torch

    for _ in range(len(_TORCHVISION_SCHEMAS) + 1):
        try:
            import torchvision  # noqa: F401

            return
        except ImportError:
            return  # no torchvision at all: timm imports without it
        except RuntimeError as err:
            match = _MISSING_OP.search(str(err))
            if match is None or match.group(1) not in _TORCHVISION_SCHEMAS:
                raise
            if _fragment is None:
                _fragment = torch.library.Library("torchvision", "FRAGMENT")
            op = match.group(1)
            if op in getattr(_fragment, "_mtbench_defined", set()):
                raise  # already declared and still failing: not the problem we know how to fix
            _fragment.define(_TORCHVISION_SCHEMAS[op])
            _fragment._mtbench_defined = getattr(_fragment, "_mtbench_defined", set()) | {op}
            _forget("torchvision")  # drop the half-initialised package before importing again
    import torchvision  # noqa: F401,F811  (raises the real error if the loop gave up)


def import_timm() -> ModuleType:
    """Return the ``timm`` module, working around the torchvision/torch mismatch (see module doc)."""
    if "timm" in sys.modules:
        return sys.modules["timm"]
    _import_torchvision()
    import timm

    return timm
