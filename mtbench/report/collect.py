"""Run records → the report's settings: one per leaderboard table (dataset · backbone · recipe · task set), with
its runs, references, failures, per-seed Δm and where each run's log and qualitative images are."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtbench.leaderboard import Table, build_tables, delta_m
from mtbench.records import describe_skipped, runs_dir, scan_records

REF_LABEL = "single-task refs"


def label(record: dict[str, Any]) -> str:
    """A method's name in figures; ``method · strategy`` once a run says it used a loss-weighting strategy."""
    w = record.get("weighting")
    if isinstance(w, dict):
        w = w.get("name") or w.get("strategy")
    return f"{record['method']} · {w}" if w and w != "fixed" else record["method"]


@dataclass
class Setting:
    table: Table
    key: str
    tasks: tuple[str, ...]
    runs: list[dict[str, Any]]  # multi-task (non-reference) runs, done and failed
    refs: list[dict[str, Any]]  # finished single-task references
    failed: list[dict[str, Any]]  # every failed run of the setting, references included
    run_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def done(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get("status") == "done"]

    @property
    def columns(self):
        return self.table.columns

    def labels(self) -> list[str]:
        return sorted({label(r) for r in self.runs})

    def value(self, record: dict, task: str) -> float | None:
        col = next(c for c in self.columns if c.task == task)
        v = record.get("metrics", {}).get(task, {}).get(col.metric)
        return None if v is None or not math.isfinite(float(v)) else float(v)

    def ref_values(self, task: str) -> list[float]:
        vals = [self.value(r, task) for r in self.refs if tuple(r["tasks"]) == (task,)]
        return [v for v in vals if v is not None]

    def ref_mean(self) -> dict[str, float] | None:
        """The references' mean per task; None where a task has no reference (Δm undefined)."""
        out = {}
        for c in self.columns:
            vals = self.ref_values(c.task)
            if not vals:
                return None
            out[c.task] = sum(vals) / len(vals)
        return out

    def delta_m(self, record: dict) -> float | None:
        ref = self.ref_mean()
        if ref is None:
            return None
        d = delta_m({c.task: self.value(record, c.task) for c in self.columns}, ref,
                    {c.task: c.higher_is_better for c in self.columns})
        return d if math.isfinite(d) else None

    def by_label(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for r in sorted(self.done, key=lambda r: (label(r), r.get("seed", 0))):
            out.setdefault(label(r), []).append(r)
        return out

    def run_dir(self, record: dict) -> Path:
        return self.run_dirs[record["run_id"]]


@dataclass
class Collected:
    results_dir: Path
    settings: list[Setting]
    skipped: list[str]  # unreadable records, described
    orphans: list[dict[str, Any]]  # failed runs that belong to no table (no tasks / setting recorded)
    n_records: int


def collect(results_dir: Path) -> Collected:
    results_dir = Path(results_dir)
    records, bad = scan_records(results_dir)
    base = runs_dir(results_dir) if runs_dir(results_dir).is_dir() else results_dir
    dirs = {r["run_id"]: base / r["run_id"] for r in records}
    settings, placed = [], set()
    for table in build_tables(records):
        key = table.slug.rsplit("_", 1)[-1]
        tasks = tuple(c.task for c in table.columns)
        same = [r for r in records if r.get("setting_key") == key]
        runs = [r for r in same if not r.get("single_task_reference") and tuple(r.get("tasks") or ()) == tasks]
        refs = [r for r in same if r.get("single_task_reference") and r.get("status") == "done"]
        failed = [r for r in same if r.get("status") == "failed"]
        placed |= {r["run_id"] for r in runs + refs + failed}
        settings.append(Setting(table, key, tasks, runs, refs, failed, dirs))
    orphans = [r for r in records if r["run_id"] not in placed and r.get("status") == "failed"]
    return Collected(results_dir, settings, describe_skipped(bad), orphans, len(records))
