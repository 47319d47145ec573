"""The report's figures, one per file: PNG for the page and PDF beside it for papers. Each function takes plain
data (lists and arrays, no records) so that figures can be drawn in worker processes."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mtbench.report.colours import CB_SAFE  # noqa: E402

DPI = 100
STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False, "pdf.fonttype": 42}
MARKERS = "osD^vP*Xh<>p"
MAX_POINTS = 400  # per curve: longer logs are averaged over windows


def colour(i: int) -> str:
    return CB_SAFE[i % len(CB_SAFE)]


def save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    # fixed margins (no tight bounding box): each tight layout pass draws the figure once more, 2-3x the time
    fig.savefig(paths[0], dpi=DPI)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def pareto(points: list[tuple[float, float]], lower_x_better: bool = True) -> list[int]:
    """Indices of the points no other point beats on both axes (y higher is better), ordered along x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0] if lower_x_better else -points[i][0],
                                                      -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def tradeoff(points: list[dict[str, Any]], xlabel: str, title: str, stem: Path,
             lower_x_better: bool = True, log_x: bool = True) -> list[Path]:
    """Δm against a cost: one point per method (mean over seeds), its seeds as an error bar (± std) and as dots,
    the Pareto front as a dashed step line. ``points``: {label, x, y (list of per-seed Δm), ref (bool)}."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        fig.subplots_adjust(left=0.1, right=0.66, bottom=0.14, top=0.92)
        xy = []
        for i, p in enumerate(points):
            ys = [y for y in p["y"] if y is not None and math.isfinite(y)]
            if not ys or p["x"] is None or not math.isfinite(p["x"]) or (log_x and p["x"] <= 0):
                continue
            mean = float(np.mean(ys))
            std = float(np.std(ys, ddof=1)) if len(ys) > 1 else 0.0
            c = "#000000" if p.get("ref") else colour(i)
            ax.errorbar([p["x"]], [mean], yerr=[std] if std else None, fmt=MARKERS[i % len(MARKERS)], color=c,
                        ms=6, capsize=3, label=p["label"] if p.get("ref") else f"{p['label']} (n={len(ys)})",
                        zorder=3)
            if len(ys) > 1:
                ax.scatter([p["x"]] * len(ys), ys, s=9, color=c, alpha=0.45, zorder=2, linewidths=0)
            xy.append((p["x"], mean))
        if xy:
            front = [xy[i] for i in pareto(xy, lower_x_better)]
            if len(front) > 1:
                fx, fy = zip(*front)
                ax.plot(fx, fy, "--", color="#555555", lw=1, drawstyle="steps-post", label="Pareto front", zorder=1)
        ax.axhline(0, color="#999999", lw=0.8, zorder=0)
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel(xlabel + (" (lower is better)" if lower_x_better else " (higher is better)"))
        ax.set_ylabel("Δm % (higher is better)")
        ax.set_title(title)
        if not xy:
            ax.text(0.5, 0.5, "no run with both numbers", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        return save(fig, stem)


def task_seeds(methods: list[tuple[str, list[float]]], ref: list[float], ylabel: str, title: str,
               stem: Path) -> list[Path]:
    """One task's primary metric: every seed a dot, mean ± std as a bar, the single-task reference's mean as a
    line (its seeds as a band)."""
    with plt.rc_context(STYLE):
        width = max(3.4, 0.8 * len(methods) + 1.6)
        fig, ax = plt.subplots(figsize=(width, 3.4))
        fig.subplots_adjust(left=0.9 / width, right=0.97, bottom=0.22, top=0.9)
        rng = np.random.default_rng(0)  # fixed jitter: the same figure every time
        for i, (name, vals) in enumerate(methods):
            v = [x for x in vals if x is not None and math.isfinite(x)]
            if not v:
                ax.text(i, 0.5, "no result", ha="center", va="center", rotation=90, fontsize=7,
                        transform=ax.get_xaxis_transform())
                continue
            jitter = rng.uniform(-0.12, 0.12, len(v))
            ax.scatter(i + jitter, v, s=14, color=colour(i), alpha=0.7, zorder=3, linewidths=0)
            ax.errorbar([i + 0.25], [np.mean(v)], yerr=[np.std(v, ddof=1)] if len(v) > 1 else None, fmt="_",
                        color="#000000", ms=10, capsize=3, zorder=4)
        r = [x for x in ref if x is not None and math.isfinite(x)]
        if r:
            ax.axhline(float(np.mean(r)), color="#000000", ls="--", lw=1,
                       label=f"single-task ref (n={len(r)})")
            if len(r) > 1:
                ax.axhspan(min(r), max(r), color="#000000", alpha=0.07, lw=0)
            ax.legend(frameon=False, loc="best")
        ax.set_xticks(range(len(methods)), [m for m, _ in methods], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        return save(fig, stem)


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS points: window means (a long log stays readable and honest)."""
    if len(x) <= MAX_POINTS:
        return x, y
    k = int(math.ceil(len(x) / MAX_POINTS))
    n = len(x) // k * k
    return x[:n].reshape(-1, k).mean(1), y[:n].reshape(-1, k).mean(1)


def training(runs: list[dict[str, Any]], tasks: list[str], title: str, stem: Path) -> list[Path]:
    """Training curves of one method's runs (one line per seed): total and per-task loss against iteration, the
    learning rate, per-task weights where logged, and the eval history where ``eval_every`` was set.
    ``runs``: {seed, it (array), loss, losses {task: array}, lr, weights {task: array}, history [(it, {task:
    value})], metric {task: name}}."""
    panels: list[tuple[str, Any]] = [("total loss", lambda r: [("", r["it"], r["loss"])])]
    for t in tasks:
        panels.append((f"{t} loss", lambda r, t=t: [("", r["it"], r["losses"][t])] if t in r["losses"] else []))
    panels.append(("learning rate", lambda r: [("", r["it"], r["lr"])] if r.get("lr") is not None else []))
    if any(r.get("weights") for r in runs):
        panels.append(("task weights", lambda r: [(t, r["it"], w) for t, w in (r.get("weights") or {}).items()]))
    if any(r.get("history") for r in runs):
        for t in tasks:
            def hist(r, t=t):
                pts = [(it, m[t]) for it, m in r.get("history") or [] if m.get(t) is not None]
                return [("", np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))] if pts else []
            metric = next((r["metric"].get(t) for r in runs if r.get("metric")), "")
            panels.append((f"eval {t} {metric}", hist))
    ncols = min(4, len(panels))
    nrows = int(math.ceil(len(panels) / ncols))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.4 * nrows + 0.4), squeeze=False)
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.5 / (2.4 * nrows + 0.4) + 0.06,
                            top=1 - 0.45 / (2.4 * nrows + 0.4), wspace=0.35, hspace=0.7)
        for ax, (name, get) in zip(axes.flat, panels):
            drew = False
            for i, r in enumerate(runs):
                for j, (sub, x, y) in enumerate(get(r)):
                    if len(x) == 0:
                        continue
                    xs, ys = _thin(np.asarray(x, float), np.asarray(y, float))
                    lab = f"{sub} s{r['seed']}" if sub else f"seed {r['seed']}"
                    ax.plot(xs, ys, marker="o" if name.startswith("eval") else None, color=colour(i if not sub else j),
                            lw=1, ms=3, ls=["-", "--", ":", "-."][i % 4] if sub else "-", label=lab)
                    drew = True
            ax.set_title(name)
            ax.set_xlabel("iteration")
            if name.endswith("loss") and drew and all(np.all(np.asarray(y) > 0) for r in runs
                                                      for _, _, y in get(r) if len(y)):
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
                ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            if not drew:
                ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
            elif name in ("total loss", "task weights"):
                ax.legend(frameon=False, fontsize=7)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.suptitle(title, fontsize=9)
        return save(fig, stem)


def qualitative(rows: list[dict[str, Any]], columns: list[str], title: str, stem: Path) -> list[Path]:
    """K images × (input, ground truth, each method): ``rows``: {label, cells: [RGB array or None per column]}."""
    ncols, nrows = len(columns), len(rows)
    h, w = next((c.shape[:2] for r in rows for c in r["cells"] if c is not None), (1, 1))
    cell_w = 1.7
    cell_h = cell_w * h / w
    with plt.rc_context(STYLE):
        fig_h = cell_h * nrows + 0.55
        fig, axes = plt.subplots(nrows, ncols, figsize=(cell_w * ncols + 0.3, fig_h), squeeze=False)
        fig.subplots_adjust(left=0.3 / (cell_w * ncols + 0.3), right=0.995, bottom=0.01, top=1 - 0.5 / fig_h,
                            wspace=0.04, hspace=0.06)
        for i, r in enumerate(rows):
            for j, img in enumerate(r["cells"]):
                ax = axes[i, j]
                ax.set_xticks([])
                ax.set_yticks([])
                for s in ax.spines.values():
                    s.set_visible(False)
                if img is None:
                    ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=7, transform=ax.transAxes)
                else:
                    ax.imshow(img, interpolation="nearest")
                if i == 0:
                    ax.set_title(columns[j], fontsize=7)
                if j == 0:
                    ax.set_ylabel(r["label"], fontsize=6)
        fig.suptitle(title, fontsize=9)
        return save(fig, stem)
