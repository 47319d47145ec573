"""Build ``<results>/report/index.html``: collect the settings, draw every figure (with progress, in two worker
processes when there are many), write the page atomically."""
from __future__ import annotations

import math
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mtbench import prediction_io
from mtbench.atomic import atomic_write_text
from mtbench.leaderboard import _images_per_s
from mtbench.qualitative import DIR_NAME as QUAL_DIR, IMAGE_NAME
from mtbench.report import html
from mtbench.report.collect import REF_LABEL, Collected, Setting, collect, label
from mtbench.report.significance import LEVEL, MIN_SEEDS, t_interval, too_few, welch
from mtbench.train_log import LOG_NAME, read_log

FIG_DIR = "fig"
PARALLEL_FROM = 24  # figures: fewer than this are drawn in this process (starting workers costs seconds)


def _fmt(v: float | None, digits: int = 2) -> str:
    return html.MISSING if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _mean(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


class Report:
    def __init__(self, results_dir: Path, out_dir: Path):
        self.results_dir, self.out = Path(results_dir), Path(out_dir)
        self.jobs: list[tuple[str, dict[str, Any]]] = []  # (function in figures, kwargs)

    def fig(self, fn: str, name: str, caption: str, **kwargs: Any) -> tuple[str, str]:
        """Queue a figure; its PNG path relative to the page and its caption."""
        stem = self.out / FIG_DIR / name
        self.jobs.append((fn, {**kwargs, "stem": stem}))
        return f"{FIG_DIR}/{name}.png", caption

    # --- sections of one setting -------------------------------------------------------------------------
    def tradeoffs(self, s: Setting, sid: str) -> str:
        groups = s.by_label()
        ref_params = sum(_mean([r["params"]["total"] for r in s.refs if tuple(r["tasks"]) == (t,)]) or 0
                         for t in s.tasks) / 1e6
        ref_flops = [_mean([(r.get("flops") or {}).get("gflops") for r in s.refs if tuple(r["tasks"]) == (t,)])
                     for t in s.tasks]
        axes = [("params", "parameters (M)", True, lambda r: r["params"]["total"] / 1e6, ref_params),
                ("gflops", "GFLOPs per image", True, lambda r: (r.get("flops") or {}).get("gflops"),
                 sum(ref_flops) if all(f is not None for f in ref_flops) else None),
                ("img_s", "train images/s", False, _images_per_s, None)]
        if s.ref_mean() is None:
            return '<p class="note">Δm needs a single-task reference for every task; see the notes above.</p>'
        panels = []
        for key, xlabel, lower, get, ref_x in axes:
            points = [{"label": lab, "x": _mean([get(r) for r in runs]), "y": [s.delta_m(r) for r in runs]}
                      for lab, runs in groups.items()]
            if not any(p["x"] is not None for p in points):
                continue
            # the references (Δm 0 by definition) where their cost adds up; kept first so colours match across panels
            points.insert(0, {"label": REF_LABEL, "x": ref_x, "y": [0.0], "ref": True})
            panels.append({"points": points, "xlabel": xlabel, "lower_x_better": lower, "log_x": key != "img_s"})
        if not panels:
            return '<p class="note">No finished multi-task run.</p>'
        costs = ", ".join(p["xlabel"] for p in panels)
        return html.figures([self.fig("tradeoff", f"{sid}_delta_m_vs_cost", f"Δm against {costs}", panels=panels,
                                      title="Δm against cost (Pareto front dashed)")], wide=True)

    def per_task(self, s: Setting, sid: str) -> str:
        groups = s.by_label()
        labels = s.labels()
        panels = []
        for c in s.columns:
            panels.append({"methods": [(lab, [s.value(r, c.task) for r in groups.get(lab, [])]) for lab in labels],
                           "ref": s.ref_values(c.task), "title": f"{c.task} {c.metric}",
                           "ylabel": f"{c.name} ({'higher' if c.higher_is_better else 'lower'} is better)"})
        names = ", ".join(f"{c.task} {c.metric}" for c in s.columns)
        return html.figures([self.fig("task_seeds", f"{sid}_primary_metrics_per_seed", f"{names}: every seed",
                                      panels=panels)], wide=len(panels) > 2)

    def significance(self, s: Setting) -> str:
        groups = s.by_label()
        base = groups.get("baseline", [])
        rows = []
        for lab, runs in groups.items():
            ci = t_interval([s.delta_m(r) for r in runs])
            n_ref = min((len(s.ref_values(c.task)) for c in s.columns), default=0)
            if ci:
                dm = f"{ci[0]:.2f} [{ci[1]:.2f}, {ci[2]:.2f}]"
            else:
                dm = f'<span class="note">{escape(too_few(len(runs), n_ref, "the references").replace(" vs ", " seed(s); refs "))}</span>' \
                    if len(runs) < MIN_SEEDS else html.MISSING
            cells = [f"<b>{escape(lab)}</b>", str(len(runs)), dm]
            for c in s.columns:
                tests = []
                for what, other in [("refs", s.ref_values(c.task)),
                                    ("baseline", [s.value(r, c.task) for r in base] if lab != "baseline" else None)]:
                    if other is None:
                        continue
                    mine = [s.value(r, c.task) for r in runs]
                    w = welch(mine, other)
                    if w is None:
                        tests.append(f'<span class="note">vs {what}: too few seeds ({len([m for m in mine if m is not None])}'
                                     f' vs {len([o for o in other if o is not None])})</span>')
                    else:
                        diff = w.mean_a - w.mean_b
                        star = " *" if w.p < 1 - LEVEL else ""
                        tests.append(f"vs {what}: Δ {diff:+.{c.decimals}f}, t = {w.t:.2f}, df = {w.df:.1f}, "
                                     f"p = {w.p:.3g}{star}")
                cells.append("<br>".join(tests))
            rows.append(cells)
        if not rows:
            return '<p class="note">No finished multi-task run to test.</p>'
        head = ["Method", "Seeds", f"Δm % mean [{int(LEVEL * 100)} % t-interval over seeds]"] + \
            [escape(f"{c.name}: Welch's t-test") for c in s.columns]
        return (f'<p class="note">Δm interval: mean ± t<sub>0.975, n−1</sub>·s/√n over the method\'s seeds, the '
                f"references' mean held fixed. Per task: Welch's two-sided t-test (unequal variances) of the "
                f"method's seeds against the single-task reference's seeds and against the baseline's; "
                f"* = p &lt; 0.05. A test needs ≥ {MIN_SEEDS} seeds on both sides; with fewer the cell says so. "
                f"No correction for multiple comparisons.</p>" + html.simple_table(head, rows))

    def training(self, s: Setting, sid: str) -> str:
        """Every run's curves in one figure (the references' too: black)."""
        logged, missing = [], []
        refs = sorted(s.refs, key=lambda r: (r["tasks"], r.get("seed", 0)))
        for r in [x for runs in s.by_label().values() for x in runs] + refs:
            lab = f"single {r['tasks'][0]}" if r in refs else label(r)
            rows = read_log(s.run_dir(r) / LOG_NAME)
            if not rows:
                missing.append(f"{lab} seed {r.get('seed')} ({r['run_id']}): no {LOG_NAME} (a run from before "
                               f"per-iteration logs, or its log was removed)")
                continue
            logged.append({**_curves(r, rows), "label": lab, "ref": r in refs})
        if not logged:
            out = '<p class="note">No training log in this setting.</p>'
        else:
            out = html.figures([self.fig("training", f"{sid}_training_curves", f"training of {len(logged)} runs",
                                         runs=logged, tasks=list(s.tasks), title="training: every run")], wide=True)
        return out + (html.bullet_list(missing) if missing else "")

    def qualitative(self, s: Setting, sid: str) -> str:
        """K images × (input, ground truth, each method's lowest seed, the task's single-task reference)."""
        groups = s.by_label()
        firsts = {lab: runs[0] for lab, runs in groups.items()}
        ids = sorted({p.name for r in list(firsts.values()) + s.refs
                      for p in (s.run_dir(r) / QUAL_DIR).glob("*") if p.is_dir()})
        if not ids:
            return ('<p class="note">No qualitative images: these runs were trained before runs kept them '
                    f"(<code>runs/&lt;id&gt;/{QUAL_DIR}/</code>); re-running them with --force adds them.</p>")
        from mtbench.registry import TASKS
        from mtbench.report.colours import colourise, depth_range

        items, absent = [], []
        any_rec = (s.done or s.refs)[0]
        num_classes = (any_rec.get("dataset_info") or {}).get("num_classes") or {}
        for t in s.tasks:
            kind = TASKS.get(t).prediction_kind if t in TASKS else ""
            if not kind:
                continue
            ref = next((r for r in sorted(s.refs, key=lambda r: r.get("seed", 0)) if tuple(r["tasks"]) == (t,)), None)
            cols = [(lab, r) for lab, r in firsts.items()] + ([(f"single-task {t}", ref)] if ref else [])
            rows = []
            for image_id in ids:
                preds = {lab: _read(s.run_dir(r) / QUAL_DIR / image_id / t, kind) for lab, r in cols}
                gt = next((g for r in [c[1] for c in cols]
                           if (g := _read(s.run_dir(r) / QUAL_DIR / image_id / f"{t}.gt", kind, True)) is not None), None)
                rgb = next((im for r in [c[1] for c in cols]
                            if (im := _read_image(s.run_dir(r) / QUAL_DIR / image_id / IMAGE_NAME)) is not None), None)
                rng = depth_range(gt) if kind == "depth" and gt is not None else \
                    depth_range(*[p for p in preds.values() if p is not None]) if kind == "depth" else None
                opts = dict(dataset=any_rec.get("dataset", ""), num_classes=int(num_classes.get(t, 0) or 0),
                            value_range=rng, task=t)
                cells = [rgb, None if gt is None else colourise(kind, gt, target=True, **opts)]
                cells += [None if preds[lab] is None else colourise(kind, preds[lab], **opts) for lab, _ in cols]
                absent += [f"{lab}: no {t} prediction for {image_id}" for lab, _ in cols if preds[lab] is None]
                row_label = image_id + (f"\n{rng[0]:.2f}–{rng[1]:.2f} m" if rng else "")
                rows.append({"label": row_label, "cells": cells})
            note = {"labels": "dataset palette, black = ignore", "depth": "viridis, one range per image (row label), "
                    "grey = no depth", "normals": "RGB = (n + 1) / 2", "probability": "grey levels"}[kind]
            items.append(self.fig("qualitative", f"{sid}_qualitative_{t}", f"{t} on {len(ids)} fixed validation "
                                  f"images ({note})", rows=rows, columns=["input", "ground truth"] +
                                  [lab for lab, _ in cols], title=f"{t}"))
        return html.figures(items) + (html.bullet_list(sorted(set(absent))) if absent else "")

    def failures(self, s: Setting) -> str:
        parts = []
        if s.failed:
            parts.append("<ul>" + "".join(html.failure(r) for r in s.failed) + "</ul>")
        short = [f"{lab}: {len(runs)} finished seed(s), others up to {m}" for m in
                 [max((len(v) for v in s.by_label().values()), default=0)] for lab, runs in s.by_label().items()
                 if len(runs) < m]
        for c in s.columns:
            if not s.ref_values(c.task):
                short.append(f"no finished single-task reference for {c.task}: Δm is not defined")
        if short:
            parts.append(html.bullet_list(short))
        return "".join(parts) or '<p class="note">None: every run of this setting finished.</p>'

    def setting(self, s: Setting, sid: str, progress: Callable[[str], None]) -> str:
        progress(f"setting {sid}")
        t = s.table
        notes = html.bullet_list(t.notes) if t.notes else ""
        body = [f'<h2 id="{sid}">{escape(t.title)}</h2>',
                "<h3>Leaderboard</h3>", html.leaderboard_table(t), notes,
                "<h3>Δm against cost</h3>", self.tradeoffs(s, sid),
                "<h3>Each task, every seed</h3>", self.per_task(s, sid),
                "<h3>Significance over seeds</h3>", self.significance(s),
                "<h3>Training</h3>", self.training(s, sid),
                "<h3>Predictions on fixed validation images</h3>", self.qualitative(s, sid),
                "<h3>Failed and missing runs</h3>", self.failures(s)]
        return "\n".join(body)


def _safe(name: str) -> str:
    """A file-name part: 'mtinet · uw' -> 'mtinet_uw'."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", name).strip("_") or "x"


def _read(stem: Path, kind: str, target: bool = False) -> np.ndarray | None:
    path = prediction_io.find(stem)
    if path is None:
        return None
    try:
        return prediction_io.read(path, kind, target)
    except (OSError, ValueError):
        return None


def _read_image(path: Path) -> np.ndarray | None:
    from PIL import Image

    try:
        return np.asarray(Image.open(path).convert("RGB"))
    except (OSError, ValueError):
        return None


def _curves(record: dict, rows: list[dict]) -> dict[str, Any]:
    """A run's log as arrays for figures.training."""
    it = np.array([r["iteration"] for r in rows], float)
    tasks = list(record["tasks"])
    losses = {t: np.array([r.get("losses", {}).get(t, np.nan) for r in rows], float) for t in tasks}
    weights = {}
    if any("task_weights" in r for r in rows):  # what the engine logs for a weighting strategy (train_log.py)
        for t in tasks:
            w = np.array([(r.get("task_weights") or {}).get(t, np.nan) for r in rows], float)
            if np.isfinite(w).any():
                weights[t] = w
    primary = record.get("primary_metrics", {})
    history = [(h["iteration"], {t: (h.get("metrics", {}).get(t) or {}).get(primary.get(t)) for t in tasks})
               for h in record.get("history") or []]
    if history and record.get("metrics"):  # the final evaluation ends the eval curve
        history.append((record.get("iterations"), {t: record["metrics"].get(t, {}).get(primary.get(t))
                                                   for t in tasks}))
    lr = np.array([r.get("lr", np.nan) for r in rows], float)
    return {"seed": record.get("seed", 0), "it": it, "loss": np.array([r.get("loss", np.nan) for r in rows], float),
            "losses": losses, "lr": lr if np.isfinite(lr).any() else None, "weights": weights,
            "history": history, "metric": primary}


def _draw(job: tuple[str, dict[str, Any]]) -> list[Path]:
    from mtbench.report import figures

    fn, kwargs = job
    return getattr(figures, fn)(**kwargs)


def _summary(col: Collected) -> str:
    n_failed = sum(len(s.failed) for s in col.settings) + len(col.orphans)
    parts = [f"<p>Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from "
             f"<code>{escape(str(col.results_dir))}</code> by <code>python bench.py report "
             f"{escape(str(col.results_dir))}</code>: {col.n_records} run record(s), {len(col.settings)} setting(s), "
             f"{n_failed} failed run(s). Numbers are those of the leaderboard (mean ± sample std over seeds; Δm in % "
             f"against the single-task references of the same setting). Every figure links to its PDF.</p>"]
    if col.skipped:
        parts.append("<h3>Unreadable run records (skipped)</h3>" + html.bullet_list(col.skipped))
    if col.orphans:
        parts.append("<h3>Failed runs outside any table</h3><ul>" +
                     "".join(html.failure(r) for r in col.orphans) + "</ul>")
    if not col.settings:
        parts.append('<p class="warn">No finished run yet: nothing to compare.</p>')
    return "".join(parts)


def build_report(results_dir: Path, out_dir: Path | None = None, console=None,
                 workers: int | None = None) -> Path:
    """Write the report; returns the path of index.html. ``workers``: processes drawing figures (default: up to
    2 when there are many figures)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from mtbench.train_log import stdout_is_terminal

    console = console or Console()
    t0 = time.perf_counter()
    col = collect(Path(results_dir))
    out = Path(out_dir) if out_dir else Path(results_dir) / "report"
    report = Report(Path(results_dir), out)
    with Progress(TextColumn("[bold]{task.description}", markup=False), BarColumn(bar_width=20),
                  TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(), console=console,
                  transient=True, disable=not stdout_is_terminal()) as progress:
        bar = progress.add_task("report: reading", total=len(col.settings))
        sections, nav = [], []
        for i, s in enumerate(col.settings):
            sid = f"s{i + 1}"
            sections.append(report.setting(s, sid, lambda m: None))
            nav.append((sid, s.table.title))
            progress.advance(bar)
        fig_dir = out / FIG_DIR
        if fig_dir.is_dir():  # figures of settings that no longer exist must not linger
            for p in fig_dir.iterdir():
                if p.suffix in (".png", ".pdf") and p.is_file():
                    p.unlink()
        draw = progress.add_task("report: figures", total=len(report.jobs))
        n = workers if workers is not None else (min(2, os.cpu_count() or 1) if len(report.jobs) >= PARALLEL_FROM
                                                 else 1)
        if n > 1:
            import multiprocessing

            with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
                for _ in pool.map(_draw, report.jobs, chunksize=4):
                    progress.advance(draw)
        else:
            for job in report.jobs:
                _draw(job)
                progress.advance(draw)
    page = html.page("mtbench report", _summary(col), nav, "\n".join(sections))
    path = out / "index.html"
    atomic_write_text(path, page)
    console.print(f"report written to {path} ({len(report.jobs)} figures, {time.perf_counter() - t0:.1f} s)",
                  markup=False, soft_wrap=True)
    return path
