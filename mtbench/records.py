"""Run records: one immutable JSON per run, written atomically; a results dir → DataFrame.

A record is the only thing the leaderboard reads, so it carries everything needed to judge a
number: the resolved config, metrics, the trivial predictors' scores, cost, and provenance.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtbench.atomic import atomic_write_text  # noqa: F401 (re-exported: writers of records import it from here)

RECORD_NAME = "record.json"
SCHEMA_VERSION = 1


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    record = {"schema": SCHEMA_VERSION, **record}
    path = Path(run_dir) / RECORD_NAME
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=_json_default) + "\n")
    return path


def failed_record(cfg: Any, error: str, tb: str = "", attempt: int = 1, **extra: Any) -> dict[str, Any]:
    """The record of a run that raised or died: enough to list it, show its error, and retry it."""
    from datetime import datetime, timezone

    from mtbench.registry import METHODS

    return {
        "run_id": cfg.run_id, "status": "failed", "config": cfg.to_dict(), "method": cfg.method,
        "dataset": cfg.dataset, "tasks": list(cfg.tasks), "backbone": cfg.backbone, "seed": cfg.seed,
        "setting_key": cfg.setting_key, "recipe_name": cfg.recipe.get("name"),
        "single_task_reference": bool(getattr(METHODS.get(cfg.method), "single_task", False)),
        "error": error, "traceback": tb, "attempt": attempt,
        "finished_at": datetime.now(timezone.utc).isoformat(), **extra,
    }


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_record(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def runs_dir(results_dir: Path) -> Path:
    return Path(results_dir) / "runs"


# What a record must hold to be listed; anything else is reported as unreadable, never a traceback.
REQUIRED = {"run_id": str, "status": str}
REQUIRED_IN_TABLE = {"method": str, "dataset": str, "backbone": str, "tasks": list, "setting_key": str}
REQUIRED_DONE = {**REQUIRED_IN_TABLE, "metrics": dict, "primary_metrics": dict, "higher_is_better": dict,
                 "params": dict}
UNREADABLE_FIX = "delete or move it away; re-running the grid that made it writes it again"


def record_problem(record: Any) -> str | None:
    """Why ``record`` cannot be used (wrong shape, missing keys), or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    grouped = record.get("tasks") and record.get("setting_key")  # a failed run with these gets a table row
    need = {**REQUIRED, **(REQUIRED_DONE if record.get("status") == "done" else REQUIRED_IN_TABLE if grouped else {})}
    bad = [k for k, t in need.items() if not isinstance(record.get(k), t)]
    if bad:
        return f"missing or malformed key(s) {', '.join(bad)}"
    if record["status"] not in ("done", "failed"):
        return f"unknown status {record['status']!r}"
    return None


def scan_records(results_dir: Path) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """Every usable record under ``<results_dir>/runs/*/record.json`` (or a dir of run dirs), and the
    unusable ones as (path, why): one bad file never hides the others."""
    results_dir = Path(results_dir)
    if not results_dir.exists():
        raise FileNotFoundError(f"results directory '{results_dir}' does not exist; run `python bench.py` first "
                                f"or pass the --results directory a grid wrote to")
    base = runs_dir(results_dir) if runs_dir(results_dir).is_dir() else results_dir
    records, skipped = [], []
    for path in sorted(base.glob(f"*/{RECORD_NAME}")):
        try:
            record = read_record(path)
        except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            skipped.append((path, f"not readable JSON ({e})"))
            continue
        problem = record_problem(record)
        if problem:
            skipped.append((path, problem))
        else:
            records.append(record)
    return records, skipped


def load_records(results_dir: Path) -> list[dict[str, Any]]:
    """The usable records under ``results_dir`` (see ``scan_records`` for the ones skipped)."""
    return scan_records(results_dir)[0]


def describe_skipped(skipped: list[tuple[Path, str]]) -> list[str]:
    return [f"unreadable record {path} skipped: {why}; {UNREADABLE_FIX}" for path, why in skipped]


def finished(run_dir: Path) -> bool:
    path = Path(run_dir) / RECORD_NAME
    if not path.is_file():
        return False
    try:
        record = read_record(path)
    except (ValueError, OSError):
        return False
    return isinstance(record, dict) and record.get("status") == "done"


def setting_line(records: list[dict[str, Any]]) -> str:
    """What a table's runs share, in words: recipe, iterations, input resolution, precision, backbone init and
    every recipe value given on the command line (``--set``); values the runs disagree on are joined with '/'."""
    def values(get) -> str:
        found = []
        for r in records:
            try:
                v = get(r)
            except (KeyError, TypeError, IndexError):
                continue
            if v is not None and v not in found:
                found.append(v)
        return "/".join(map(str, found)) or "?"

    def recipe(r: dict) -> dict:
        return r["config"]["recipe"]

    def precision(r: dict) -> str | None:
        if r.get("precision"):
            return "bf16" if "bf16" in r["precision"] else "fp32"
        return None

    def init(r: dict) -> str:
        weights = (r.get("config") or {}).get("backbone_weights")
        return f"weights {Path(weights).name}" if weights else "random init"

    overrides = sorted({o for r in records for o in ((r.get("config") or {}).get("recipe") or {}).get("overrides", [])})
    parts = [f"recipe {values(lambda r: r.get('recipe_name') or recipe(r)['name'])}",
             f"{values(lambda r: r.get('iterations') or recipe(r)['iterations'])} it",
             values(lambda r: "x".join(map(str, r["dataset_info"]["image_size"]))),
             values(precision), values(init)]
    return ", ".join(parts) + (f", --set {' '.join(overrides)}" if overrides else "")
