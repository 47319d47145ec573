"""The trivial (constant) predictors' scores, computed once per data setting instead of once per run.

Every run's record carries them, and they depend only on the data: the dataset, its options and files, the
tasks and the evaluation settings, never on the method, seed or schedule. Fitting them reads the whole training
split (on NYUD / PASCAL: every image and target decoded again, in every run of a grid), so the scores are kept
in ``<results>/cache/trivial/<key>.json`` (atomic write) and read back by later runs: the same numbers, as
JSON round-trips floats exactly. The key holds the files' sizes and modification times when the dataset is read
from ``--data-dir``; bump ``VERSION`` when a task's prior or an evaluator changes what it computes.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable

from mtbench.atomic import atomic_write_text
from mtbench.config import stable_hash
from mtbench.distributed import broadcast_object, context

VERSION = 1


def data_fingerprint(data_dir: str | None) -> str | None:
    """Sizes and modification times of every file under ``data_dir`` (None for rendered data)."""
    if not data_dir:
        return None
    entries = []
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        for name in sorted(files):
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            entries.append(f"{os.path.relpath(os.path.join(root, name), data_dir)}|{st.st_size}|{st.st_mtime_ns}")
    return stable_hash([os.path.abspath(data_dir), entries], 16)


def cache_key(dataset: str, task: str, info: Any, data_cfg: dict[str, Any], eval_cfg: dict[str, Any],
              data_dir: str | None) -> str:
    """One task's key. The scores of a task do not depend on the other tasks of the run except through the
    dataset's info (a PASCAL-like task set changes the boundary tolerance), which the key holds."""
    cfg = {k: v for k, v in data_cfg.items() if k not in ("cache_dir", "data_dir")}
    info = dataclasses.replace(info, tasks=()) if dataclasses.is_dataclass(info) else info  # the run's task set
    return stable_hash({"version": VERSION, "dataset": dataset, "task": task, "info": repr(info), "data_cfg": cfg,
                        "eval": eval_cfg, "files": data_fingerprint(data_dir)}, 16)


def cached_scores(cache_dir: Path, keys: dict[str, str],
                  compute: Callable[[list[str]], dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per task (``keys``: task -> key) the stored scores, and ``compute(missing tasks)`` for the others, stored
    by rank 0. Under data parallel every rank takes rank 0's findings, so all ranks compute the same tasks."""
    folder = Path(cache_dir) / "trivial"
    found: dict[str, dict[str, float]] = {}
    if context().is_main:
        for task, key in keys.items():
            try:
                found[task] = json.loads((folder / f"{key}.json").read_text())["scores"]
            except (OSError, ValueError, KeyError, TypeError):
                pass  # absent or unreadable: computed (and written) again
    found = broadcast_object(found)
    missing = [t for t in keys if t not in found]
    if missing:
        computed = compute(missing)
        if context().is_main:
            for task in missing:
                try:
                    atomic_write_text(folder / f"{keys[task]}.json",
                                      json.dumps({"task": task, "scores": computed[task]}, indent=1) + "\n")
                except OSError:
                    pass  # a cache: this run has its scores, a later one computes them again
        found.update(computed)
    return {t: found[t] for t in keys}
