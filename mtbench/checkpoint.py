"""Training checkpoints that resume bit-exactly and load without running code.

- Loaded with ``torch.load(weights_only=True)`` only: everything a checkpoint holds (weights, optimizer and
  schedule state, RNG states, history, a weighting strategy's state) is stored as tensors, numbers, strings,
  lists and dicts, checked before writing. A file that needs full unpickling is refused, with how to convert it
  if it is trusted (``python -m mtbench.checkpoint convert PATH``).
- Never written with non-finite weights or optimizer state: a diverged run keeps its last good checkpoint.
- ``last.pt`` is the newest state and ``previous.pt`` the one before (a hard link until ``last.pt`` is replaced,
  so it costs disk only once there are two). A corrupt file is moved aside (kept for inspection) and the run
  resumes from the other one, or from 0, saying so.
- A finished run keeps ``final.pt`` (model weights only); ``prune`` removes the training state.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import pickle
import random
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtbench.atomic import atomic_write

LAST, PREVIOUS, FINAL = "last.pt", "previous.pt", "final.pt"
FORMAT = 2  # 1: numpy/python RNG state pickled (needs full unpickling); 2: safe types only
SAFE_SCALARS = (str, int, float, bool, type(None))


class UnsafeCheckpoint(ValueError):
    """A checkpoint that ``weights_only`` loading refuses: it would need to run code from the file."""


class CorruptCheckpoint(ValueError):
    """A checkpoint that cannot be read at all (truncated, overwritten, not a torch file)."""


class NonFiniteState(RuntimeError):
    """Weights or optimizer state went NaN/Inf; nothing was written, the last good checkpoint is kept."""


# --- RNG state in safe types -------------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
             "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _legacy_rng(state: dict[str, Any]) -> dict[str, Any]:
    """Format 1's RNG state (numpy tuple, python tuple) in format 2's safe types."""
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    version, internal, gauss_next = state["python"]
    out = {"torch": state["torch"],
           "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
           "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}
    if "cuda" in state:
        out["cuda"] = list(state["cuda"])
    return out


# --- what may go into a checkpoint -------------------------------------------------------------------------

def plain(obj: Any) -> Any:
    """numpy scalars and arrays as Python numbers and tensors (what a history of metrics or a strategy's
    state may hold), so that the safe loader reads them back."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    return obj


def check_safe(obj: Any, where: str = "checkpoint") -> None:
    """Raise TypeError naming the first value ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(obj, (torch.Tensor, torch.Size)) or type(obj) in SAFE_SCALARS:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key of type {type(k).__name__}; use str or int keys")
            check_safe(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_safe(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__name__}: a checkpoint holds only tensors, "
                    f"numbers, strings, lists and dicts (it is loaded with weights_only=True); convert it first")


def _tensors(obj: Any):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def nbytes(obj: Any) -> int:
    """About the size ``torch.save`` writes: the tensors' bytes plus a little for the pickle."""
    return sum(t.numel() * t.element_size() for t in _tensors(obj)) + 2**20


def first_non_finite(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> str | None:
    """The name of a weight, buffer or optimizer state tensor holding NaN/Inf, or None (one host sync)."""
    named = [(k, v) for k, v in model.state_dict().items() if v.is_floating_point()]
    if optimizer is not None:
        for i, s in enumerate(optimizer.state.values()):
            named += [(f"optimizer state {i}.{k}", v) for k, v in s.items()
                      if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not named:
        return None
    ok = torch.stack([torch.isfinite(v).all() for _, v in named]).cpu()
    bad = (~ok).nonzero()
    return named[int(bad[0])][0] if len(bad) else None


# --- writing -----------------------------------------------------------------------------------------------

def save(ckpt_dir: Path, model: torch.nn.Module, optimizer, scheduler, iteration: int, extra: dict | None = None,
         write: bool = True) -> Path:
    """Check the state (every rank: the weights are the same everywhere), then write it (``write``: one rank).
    Atomic: a crash while saving leaves the previous checkpoints intact."""
    ckpt_dir = Path(ckpt_dir)
    bad = first_non_finite(model, optimizer)
    if bad is not None:
        last = saved_iteration(ckpt_dir)
        kept = (f"the last good checkpoint (iteration {last}) is kept and a retry resumes from it"
                if last is not None else "no checkpoint was written before it, so a retry starts from iteration 0")
        raise NonFiniteState(f"weights are not finite after iteration {iteration} ({bad}); the checkpoint was not "
                             f"written: {kept}. Lower the learning rate or set grad_clip in the recipe")
    if not write:
        return ckpt_dir / LAST
    payload = {"format": FORMAT, "iteration": int(iteration), "model": model.state_dict(),
               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
               "extra": plain(extra or {})}
    check_safe(payload)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last, previous = ckpt_dir / LAST, ckpt_dir / PREVIOUS
    previous.unlink(missing_ok=True)  # frees the older state before the new one is written
    if last.is_file():
        try:
            os.link(last, previous)  # no space used until last.pt is replaced
        except OSError:
            pass  # a filesystem without hard links: one checkpoint only
    return atomic_write(last, lambda f: torch.save(payload, f), needed=nbytes(payload))


def save_final(ckpt_dir: Path, model: torch.nn.Module, iteration: int, write: bool = True) -> Path:
    """The finished model's weights alone: what stays on disk once the run is done (see ``prune``)."""
    if not write:
        return Path(ckpt_dir) / FINAL
    payload = {"format": FORMAT, "iteration": int(iteration), "model": model.state_dict()}
    return atomic_write(Path(ckpt_dir) / FINAL, lambda f: torch.save(payload, f), needed=nbytes(payload))


def prune(ckpt_dir: Path) -> int:
    """Remove the training state (weights + optimizer + RNG) of a finished run that has ``final.pt``; bytes freed."""
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / FINAL).is_file():
        return 0
    freed = 0
    for name in (LAST, PREVIOUS):
        path = ckpt_dir / name
        try:
            st = path.stat()
            path.unlink()
            freed += st.st_size if st.st_nlink <= 1 else 0
        except FileNotFoundError:
            continue
    return freed


# --- reading -----------------------------------------------------------------------------------------------

def read(path: Path, device: torch.device | str = "cpu", mmap: bool = False) -> dict[str, Any]:
    """``torch.load(weights_only=True)``; UnsafeCheckpoint or CorruptCheckpoint (naming the file) otherwise."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "Unsupported class" in str(e):
            needs = str(e).split("Unsupported ", 1)[1].split(" was not", 1)[0]
            raise UnsafeCheckpoint(
                f"{path} needs full unpickling to load ({needs}), which can run code from the file, so mtbench "
                f"does not load it. If you trust the file, convert it once with: python -m mtbench.checkpoint "
                f"convert {path}") from None
        raise CorruptCheckpoint(f"{path}: not a readable checkpoint ({_short(e)})") from None
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.ENOENT):
            raise
        raise CorruptCheckpoint(f"{path}: not a readable checkpoint ({_short(e)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, AttributeError) as e:
        raise CorruptCheckpoint(f"{path}: not a readable checkpoint ({_short(e) or type(e).__name__})") from None
    if not isinstance(payload, dict) or "iteration" not in payload or "model" not in payload:
        raise CorruptCheckpoint(f"{path}: not an mtbench checkpoint (no iteration / model)")
    return payload


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def saved_iteration(ckpt_dir: Path) -> int | None:
    """The iteration of the newest readable checkpoint, without loading its tensors; None if there is none."""
    for name in (LAST, PREVIOUS):
        try:
            return int(read(Path(ckpt_dir) / name, mmap=True)["iteration"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def quarantine(path: Path) -> Path:
    """Move a corrupt file aside (kept for inspection, never read again)."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, target)
    return target


@dataclass
class Resume:
    """Where training restarts: the iteration, the ``extra`` state saved with it, and what happened on the way
    (corrupt files moved aside), for the log and the record."""
    iteration: int = 0
    extra: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def report(self, say) -> None:
        for note in self.notes:
            say(note)


def load_latest(ckpt_dir: Path, model: torch.nn.Module, optimizer, scheduler, device: torch.device,
                is_main: bool = True) -> Resume:
    """Restore the newest good checkpoint (``last.pt``, else ``previous.pt``); a fresh start if there is none."""
    ckpt_dir, notes = Path(ckpt_dir), []
    for name in (LAST, PREVIOUS):
        path = ckpt_dir / name
        if not path.is_file():
            continue
        try:
            payload = read(path, device)
        except CorruptCheckpoint as e:
            moved = quarantine(path) if is_main and path.is_file() else path
            notes.append(f"{e}; moved aside to {moved.name}")
            continue
        try:
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise RuntimeError(f"{path} does not fit this run's model or optimizer ({_short(e)}); it was written by "
                               f"other code or settings: re-run with --force to start over") from None
        set_rng_state(payload["rng"])
        if notes:
            notes.append(f"resumed from {name} at iteration {payload['iteration']}")
        return Resume(int(payload["iteration"]), payload.get("extra") or {}, notes)
    if notes:
        notes.append("no readable checkpoint left: training restarts from iteration 0")
    return Resume(0, {}, notes)


def load_weights(ckpt_dir: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A run's model weights: ``final.pt`` once it is done, else its newest training checkpoint."""
    for name in (FINAL, LAST, PREVIOUS):
        if (Path(ckpt_dir) / name).is_file():
            return read(Path(ckpt_dir) / name, device)["model"]
    raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")


# --- converting a trusted old file -------------------------------------------------------------------------

def convert(path: Path) -> Path:
    """Rewrite a TRUSTED checkpoint that needs full unpickling in the safe format (loads it with
    weights_only=False: run this only on files you made yourself or trust)."""
    path = Path(path)
    payload = torch.load(path, map_location="cpu", weights_only=False)  # the user vouched for this file
    if isinstance(payload, dict) and isinstance(payload.get("rng", {}).get("numpy"), tuple):
        payload["rng"] = _legacy_rng(payload["rng"])
    if isinstance(payload, dict) and "extra" in payload:
        payload["extra"] = json.loads(json.dumps(payload["extra"], default=float))
    if isinstance(payload, dict) and "iteration" in payload:
        payload["format"] = FORMAT
    check_safe(payload, str(path))
    atomic_write(path, lambda f: torch.save(payload, f), needed=nbytes(payload))
    read(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mtbench.checkpoint",
                                description="Convert a trusted checkpoint to the format loaded with weights_only=True")
    p.add_argument("action", choices=["convert"])
    p.add_argument("paths", nargs="+", help="checkpoint files you trust (they are fully unpickled once)")
    args = p.parse_args(argv)
    for path in args.paths:
        try:
            convert(Path(path))
        except (OSError, TypeError, ValueError, pickle.UnpicklingError, RuntimeError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 2
        print(f"converted {path}: it now loads with weights_only=True")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
