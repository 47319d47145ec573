"""Leaderboards from run records alone: mean ± std over seeds and Δm against single-task references.

One row per (method, weighting strategy); every strategy's Δm is against the same references, which do not
depend on the strategy. A row's label is the method, followed by `· strategy` when that is not `fixed`.

Δm = (1/T) Σ_t (−1)^{l_t} (M_m,t − M_st,t) / M_st,t × 100, with l_t = 1 where lower is better, one
primary metric per task, and references trained with the same backbone, data and recipe (the
same ``setting_key``). Δm is computed per seed of the method against the references' mean over
seeds, then reported as mean ± std over the method's seeds.

A setting declares its convention in its records (``delta_m.convention``, from ``DatasetInfo.delta_m``):
``primary`` as above, or ``all``, the convention of the optimisation literature's NYUv2 / Cityscapes tables
(MTAN, CAGrad, Nash-MTL, FAMO): Δm over *every* metric each task lists in ``delta_m.metrics``, flat,
Δm = (1/K) Σ_k (−1)^{l_k} (M_m,k − M_st,k) / M_st,k × 100 over the K metrics of all tasks. (Nash-MTL's
``delta_fn`` and CAGrad average the 9 NYUv2 metrics flat like this; LibMTL's ``count_improvement`` first averages
within each task, which weighs NYUv2's 5 normal metrics as much as the 2 depth metrics.) The sign is mtbench's
(higher is better); the papers print −Δm (lower is better). Such tables show one column per metric, Δm over all
metrics and, beside it, Δm over the primary metrics; the title says which convention ranks the rows.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtbench.records import atomic_write_text, describe_skipped, scan_records, setting_line
from mtbench.units import decimals, primary, unit

MISSING = "—"


def delta_m(metrics: dict[str, float], reference: dict[str, float], higher_is_better: dict[str, bool]) -> float:
    """Δm in percent over the tasks in ``reference``; NaN if any task is missing or a reference is 0."""
    terms = []
    for t, ref in reference.items():
        if t not in metrics or metrics[t] is None or ref is None or ref == 0 or not math.isfinite(ref):
            return float("nan")
        sign = 1.0 if higher_is_better[t] else -1.0
        terms.append(sign * (metrics[t] - ref) / ref)
    return 100.0 * float(np.mean(terms)) if terms else float("nan")


@dataclass
class Column:
    task: str
    metric: str
    higher_is_better: bool
    key: str = ""  # the row key of its values: the task (one column per task), or "task/metric"

    def __post_init__(self) -> None:
        self.key = self.key or self.task

    @property
    def unit(self) -> str:
        return unit(self.task, self.metric)

    @property
    def decimals(self) -> int:
        return decimals(self.task, self.metric)

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    @property
    def name(self) -> str:
        """'semseg mIoU %', 'depth rmse m', 'edge_loss': the metric and its unit, no direction."""
        base = f"{self.task}_loss" if self.metric == "loss" else f"{self.task} {self.metric}"
        return f"{base} {self.unit}" if self.unit else base

    @property
    def label(self) -> str:
        return f"{self.name} {self.arrow}"


#: the columns after the tasks': (row key, header, decimals, higher is better); Δm's direction is in its header
EXTRA_COLUMNS = [("delta_m", "Δm % ↑", 2, True), ("params_M", "Params (M)", 2, False),
                 ("gflops", "GFLOPs", 2, False), ("img_s", "train img/s", 1, True), ("peak_mb", "peak MB", 0, False)]
#: an "all metrics" table shows both conventions: Δm over every metric, then over the primary ones
ALL_DELTAS = [("delta_m", "Δm all % ↑", 2, True), ("delta_m_primary", "Δm primary % ↑", 2, True)]


@dataclass
class Table:
    title: str
    slug: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    convention: str = "primary"  # Δm over the primary metrics, or over all metrics ("all": delta_m_primary too)


def weighting_of(record: dict) -> str:
    """The run's weighting strategy ("fixed" for records made before strategies existed)."""
    return (record.get("config") or {}).get("weighting") or "fixed"


def _primary(record: dict, task: str) -> tuple[str, bool]:
    """The task's primary metric, or its validation loss while no evaluator gives the primary."""
    metric = record["primary_metrics"][task]
    if metric in record["metrics"].get(task, {}):
        return metric, bool(record["higher_is_better"][task][metric])
    return "loss", False


def _value(record: dict, col: Column, source: str = "metrics") -> float | None:
    v = record.get(source, {}).get(col.task, {}).get(col.metric)
    return None if v is None else float(v)


def _stats(values: list[float | None]) -> tuple[float, float, int]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan"), 0
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"), len(vals)


def build_tables(records: list[dict[str, Any]]) -> list[Table]:
    done = [r for r in records if r.get("status") == "done"]
    failed = [r for r in records if r.get("status") == "failed"]
    refs = [r for r in done if r.get("single_task_reference")]
    groups: dict[tuple[str, tuple[str, ...]], list[dict]] = defaultdict(list)
    for r in done + failed:  # a method whose every run failed still gets its row (of —)
        if r.get("tasks") and r.get("setting_key") and not r.get("single_task_reference"):
            groups[(r["setting_key"], tuple(r["tasks"]))].append(r)
    # A setting with only references still gets a table (the single-task numbers themselves).
    ref_settings = {r["setting_key"] for r in refs} - {k for k, _ in groups}
    for key in ref_settings:
        tasks = tuple(dict.fromkeys(t for r in refs if r["setting_key"] == key for t in r["tasks"]))
        groups[(key, tasks)] = []
    tables = []
    for (key, tasks), members in sorted(groups.items(), key=lambda kv: kv[0]):
        tables.append(_table(key, tasks, members, [r for r in refs if r["setting_key"] == key],
                             [r for r in failed if r.get("setting_key") == key]))
    titles = [t.title for t in tables]
    for t in tables:  # settings that read the same (a recipe file edited between runs) stay apart
        if titles.count(t.title) > 1:
            t.title += f" · setting {t.slug.rsplit('_', 1)[-1]}"
    return tables


def _images_per_s(r: dict) -> float | None:
    """Training throughput; derived for records written before the engine stored it."""
    if r.get("train_images_per_s") is not None:
        return r["train_images_per_s"]
    try:
        trained = r["iterations"] - r["resumed_from"]
        return trained * r["config"]["recipe"]["batch_size"] / r["train_time_s"]
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def _seeds(done: int, planned: int) -> str:
    return str(done) if done == planned else f"{done}/{planned}"


def _table(key: str, tasks: tuple[str, ...], members: list[dict], refs: list[dict], failed: list[dict]) -> Table:
    any_rec = (members or refs)[0]
    members_all, members = members, [r for r in members if r.get("status") == "done"]
    ref_by_task = {t: [r for r in refs if tuple(r["tasks"]) == (t,)] for t in tasks}
    columns = []
    for t in tasks:
        source = next((r for r in members + ref_by_task[t]), None)
        # no finished run: the task's own primary metric (a table of failed runs names its metrics right)
        metric, hib = _primary(source, t) if source else (primary(t) or ("?", True))
        columns.append(Column(t, metric, hib))
    primary_columns, convention = columns, _convention(members + refs)
    if convention == "all":
        columns = _all_columns(tasks, members, ref_by_task) or columns
    recipe = any_rec.get("recipe_name", "?")
    title = f"{any_rec['dataset']} · {any_rec['backbone']} · tasks {', '.join(tasks)} · " \
            f"{setting_line(members + refs + failed)}"
    title += (f" · Δm over all {len(columns)} metrics" if convention == "all" else " · Δm over the primary metrics")
    if "edge" in tasks:  # boundary scores are comparable only under one evaluation protocol
        title += f" · edge protocol {any_rec.get('config', {}).get('recipe', {}).get('eval', {}).get('edge_protocol', 'unrecorded')}"
    table = Table(title=title, slug=f"{any_rec['dataset']}_{any_rec['backbone']}_{recipe}_{'-'.join(tasks)}_{key}",
                  columns=columns, convention=convention)
    hib = {c.key: c.higher_is_better for c in columns}
    primary_keys = {c.task: next((k for k in columns if (k.task, k.metric) == (c.task, c.metric)), c)
                    for c in primary_columns}

    ref_mean: dict[str, float] = {}
    ref_row: dict[str, Any] = {"method": "single-task refs", "delta_m": (0.0, float("nan"))}
    ref_counts = []
    for c in columns:
        mean, std, n = _stats([_value(r, c) for r in ref_by_task[c.task]])
        ref_row[c.key] = (mean, std)
        ref_counts.append(n)
        if n:
            ref_mean[c.key] = mean
        elif not any(f"'{c.task}'" in note for note in table.notes):
            table.notes.append(f"no single-task reference for '{c.task}' in this setting: Δm is not defined")
    # Seeds of the reference row: the fewest any task has; a task short of seeds is named.
    ref_row["seeds"] = str(min(ref_counts)) if len(set(ref_counts)) == 1 else f"{min(ref_counts)}-{max(ref_counts)}"
    for c, n in zip(columns, ref_counts):
        if 0 < n < max(ref_counts) and not any(f"the '{c.task}' reference" in note for note in table.notes):
            table.notes.append(f"the '{c.task}' reference has {n} seed(s), others up to {max(ref_counts)}")
    ref_row["params_M"] = sum(_stats([r["params"]["total"] for r in ref_by_task[t]])[0] for t in tasks) / 1e6
    ref_row["gflops"] = sum(_stats([(r.get("flops") or {}).get("gflops") for r in ref_by_task[t]])[0] for t in tasks)
    if len(ref_mean) < len(columns):
        ref_row["delta_m"] = (float("nan"), float("nan"))
    ref_row["delta_m_primary"] = ref_row["delta_m"]
    table.rows.append(ref_row)

    for method, strategy in sorted({(r["method"], weighting_of(r)) for r in members_all},
                                   key=lambda k: (k[0], k[1] != "fixed", k[1])):
        def mine(r: dict) -> bool:
            return r["method"] == method and weighting_of(r) == strategy

        runs = [r for r in members if mine(r)]
        planned = len({r["seed"] for r in members_all if mine(r)})
        label = method if strategy == "fixed" else f"{method} · {strategy}"
        row: dict[str, Any] = {"method": label, "seeds": _seeds(len(runs), planned)}
        for c in columns:
            row[c.key] = _stats([_value(r, c) for r in runs])[:2]
        complete = len(ref_mean) == len(columns)
        deltas = [delta_m({c.key: _value(r, c) for c in columns}, ref_mean, hib) for r in runs]
        row["delta_m"] = _stats(deltas)[:2] if complete else (float("nan"), float("nan"))
        row["delta_m_primary"] = _primary_delta(runs, primary_keys, ref_mean, hib) if complete else row["delta_m"]
        row["params_M"] = _stats([r["params"]["total"] for r in runs])[0] / 1e6
        row["gflops"] = _stats([(r.get("flops") or {}).get("gflops") for r in runs])[0]
        row["img_s"] = _stats([_images_per_s(r) for r in runs])[0]
        row["peak_mb"] = _stats([(r.get("peak_memory") or {}).get("mb") for r in runs])[0]
        table.rows.append(row)

    trivial_sources = members + refs
    triv: dict[str, Any] = {"method": "trivial (constant)", "seeds": MISSING, "params_M": 0.0, "gflops": 0.0}
    for c in columns:  # the same constant in every record: its mean, no spread to report
        triv[c.key] = (_stats([_value(r, c, "trivial") for r in trivial_sources
                               if c.task in r.get("trivial", {})])[0], float("nan"))
    triv["delta_m"] = (delta_m({c.key: triv[c.key][0] for c in columns}, ref_mean, hib), float("nan")) \
        if len(ref_mean) == len(columns) else (float("nan"), float("nan"))
    triv["delta_m_primary"] = (delta_m({k: triv[c.key][0] for k, c in primary_keys.items()},
                                       {k: ref_mean.get(c.key) for k, c in primary_keys.items()},
                                       {k: c.higher_is_better for k, c in primary_keys.items()}), float("nan")) \
        if len(ref_mean) == len(columns) else (float("nan"), float("nan"))
    table.rows.append(triv)
    table.notes += list(dict.fromkeys(f"{r['method']}: {n}" for r in members_all for n in r.get("method_notes", [])))
    table.notes += list(dict.fromkeys(_weighting_note(r) for r in members_all if weighting_of(r) != "fixed"))
    for r in failed:
        table.notes.append(f"failed run {r['run_id']}: {r.get('error', '?')}")
    return table


def _convention(records: list[dict]) -> str:
    """The setting's Δm convention, as its records declare it (records written before it existed: primary)."""
    found = {(r.get("delta_m") or {}).get("convention", "primary") for r in records}
    return "all" if found == {"all"} else "primary"


def _all_columns(tasks: tuple[str, ...], members: list[dict], ref_by_task: dict[str, list[dict]]) -> list[Column]:
    """One column per metric of each task's ``delta_m.metrics``, in the order the task lists them."""
    columns = []
    for t in tasks:
        source = next((r for r in members + ref_by_task[t] if t in (r.get("delta_m") or {}).get("metrics", {})), None)
        if source is None:
            return []
        for m in source["delta_m"]["metrics"][t]:
            columns.append(Column(t, m, bool(source["higher_is_better"][t][m]), key=f"{t}/{m}"))
    return columns


def _primary_delta(runs: list[dict], primary: dict[str, Column], ref_mean: dict[str, float],
                   hib: dict[str, bool]) -> tuple[float, float]:
    """Δm over the primary metric of each task, the second convention of an "all" table."""
    refs = {t: ref_mean[c.key] for t, c in primary.items()}
    dirs = {t: hib[c.key] for t, c in primary.items()}
    return _stats([delta_m({t: _value(r, c) for t, c in primary.items()}, refs, dirs) for r in runs])[:2]


def _weighting_note(r: dict) -> str:
    w = r.get("weighting") or {"name": weighting_of(r)}
    opts = ", ".join(f"{k}={v}" for k, v in (w.get("options") or {}).items())
    where = f", aggregated at the {w['aggregated_at']}" if w.get("aggregated_at") else ""
    return f"weighting {w['name']} ({w.get('backend', '?')}{'; ' + opts if opts else ''}{where})"


def _fmt(mean: float, std: float = float("nan"), digits: int = 2) -> str:
    if mean is None or not math.isfinite(mean):
        return MISSING
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and math.isfinite(std) else "")


def extra_columns(table: Table) -> list[tuple[str, str, int, bool]]:
    """The columns after the tasks': one Δm, or both conventions' for an "all metrics" table."""
    return (ALL_DELTAS + EXTRA_COLUMNS[1:]) if table.convention == "all" else EXTRA_COLUMNS


def cell_values(table: Table, row: dict[str, Any]) -> list[tuple[float, float, int]]:
    """(mean, std, decimals) of every numeric column of ``row``, in header order (tasks, then the extra columns)."""
    out = [(*row[c.key], c.decimals) for c in table.columns]
    for key, _, digits, _ in extra_columns(table):
        v = row.get(key, float("nan"))
        out.append((*v, digits) if isinstance(v, tuple) else (v, float("nan"), digits))
    return out


def headers(table: Table) -> list[str]:
    return [c.label for c in table.columns] + [h for _, h, _, _ in extra_columns(table)]


def to_markdown(table: Table) -> str:
    head = ["Method", "Seeds"] + headers(table)
    lines = [f"### {table.title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        cells = [f"**{row['method']}**", str(row["seeds"])]
        cells += [_fmt(*v) for v in cell_values(table, row)]
        lines.append("| " + " | ".join(cells) + " |")
    if table.notes:
        lines += [""] + [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def to_frame(table: Table) -> pd.DataFrame:
    rows = []
    for row in table.rows:
        flat = {"method": row["method"], "seeds": row["seeds"]}
        for c in table.columns:
            flat[f"{c.task}/{c.metric}"], flat[f"{c.task}/{c.metric}/std"] = row[c.key]
        flat["delta_m"], flat["delta_m/std"] = row["delta_m"]
        if table.convention == "all":
            flat["delta_m_primary"], flat["delta_m_primary/std"] = row["delta_m_primary"]
        flat["params_M"], flat["gflops"] = row["params_M"], row["gflops"]
        flat["train_images_per_s"], flat["peak_mb"] = row.get("img_s"), row.get("peak_mb")
        rows.append(flat)
    return pd.DataFrame(rows)


HEADER = ("# mtbench leaderboard\n\nGenerated from run records by `python bench.py leaderboard {src}`. "
          "Mean ± sample std over seeds; Δm (%) against single-task references of the same backbone, "
          "data and recipe; the trivial row is the best constant predictor fitted on the training targets. "
          "GFLOPs: torch's flop counter, one image at the input size (a multiply-add counts 2). Train img/s "
          "and peak memory (CUDA allocator peak, or the process's max RSS on CPU) as measured in the runs, "
          "on whatever device each ran.\n\n")


def write_leaderboard(results_dir: Path, out_dir: Path | None = None,
                      skipped: list[str] | None = None) -> tuple[list[Table], Path]:
    """Rebuild every table from the records under ``results_dir``; write markdown, CSV and LaTeX atomically. Unreadable
    records are skipped and listed at the end (and appended to ``skipped``, for the caller to show)."""
    results_dir = Path(results_dir)
    records, bad = scan_records(results_dir)
    tables = build_tables(records)
    out_dir = Path(out_dir) if out_dir else results_dir / "leaderboards"
    md = HEADER.format(src=results_dir) + "\n".join(to_markdown(t) for t in tables)
    if not tables:
        md += "_No finished runs yet._\n"
    if bad:
        notes = describe_skipped(bad)
        md += "\n### Unreadable run records (skipped)\n\n" + "".join(f"- {n}\n" for n in notes)
        if skipped is not None:
            skipped.extend(notes)
    for t in tables:
        atomic_write_text(out_dir / f"{t.slug}.csv", to_frame(t).to_csv(index=False))
    from mtbench.latex import to_latex_document

    atomic_write_text(out_dir / "leaderboard.tex", to_latex_document(tables, results_dir))
    path = out_dir / "leaderboard.md"
    atomic_write_text(path, md)
    return tables, path
