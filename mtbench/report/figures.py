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
MARKERS = "osD^vP*Xh<>"  # 11 markers against 12 colours: (colour, marker) repeats only after 132 points
MAX_POINTS = 400  # per curve: longer logs are averaged over windows


def colour(i: int) -> str:
    return CB_SAFE[i % len(CB_SAFE)]


def _minor_label(x: float, _pos=None) -> str:
    """Label the 2s and 5s between decades on a log axis (all nine crowd into each other)."""
    if x <= 0:
        return ""
    lead = round(x / 10 ** math.floor(math.log10(x) + 1e-9))
    return f"{x:g}" if lead in (2, 5) else ""


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


def _tradeoff_panel(ax, points: list[dict[str, Any]], xlabel: str, lower_x_better: bool, log_x: bool) -> None:
    xy = []
    for i, p in enumerate(points):
        ys = [y for y in p["y"] if y is not None and math.isfinite(y)]
        if not ys or p["x"] is None or not math.isfinite(p["x"]) or (log_x and p["x"] <= 0):
            continue
        mean = float(np.mean(ys))
        std = float(np.std(ys, ddof=1)) if len(ys) > 1 else 0.0
        c = "#000000" if p.get("ref") else colour(i)
        ax.errorbar([p["x"]], [mean], yerr=[std] if std else None, fmt=MARKERS[i % len(MARKERS)], color=c,
                    ms=6, capsize=3, label=p["label"] if p.get("ref") else f"{p['label']} (n={len(ys)})", zorder=3)
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
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(_minor_label))
    ax.set_xlabel(xlabel + (" (lower is better)" if lower_x_better else " (higher is better)"))
    if not xy:
        ax.text(0.5, 0.5, "no run with both numbers", ha="center", va="center", transform=ax.transAxes)


def tradeoff(panels: list[dict[str, Any]], title: str, stem: Path) -> list[Path]:
    """Δm against costs, one panel per cost (parameters, GFLOPs, train img/s), Δm shared: one point per method
    (mean over seeds), its seeds as an error bar (± std) and as dots, the Pareto front as a dashed step line.
    ``panels``: {points [{label, x, y (per-seed Δm), ref}], xlabel, lower_x_better, log_x}."""
    n = len(panels)
    fig_w = 3.3 * n + 2.0
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, n, figsize=(fig_w, 3.4), squeeze=False, sharey=True)
        fig.subplots_adjust(left=0.6 / fig_w, right=1 - 2.0 / fig_w, bottom=0.16, top=0.88, wspace=0.12)
        for ax, p in zip(axes[0], panels):
            _tradeoff_panel(ax, p["points"], p["xlabel"], p["lower_x_better"], p["log_x"])
        axes[0, 0].set_ylabel("Δm % (higher is better)")
        handles, labels = {}, []
        for ax in axes[0]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in handles:
                    handles[lab] = h
                    labels.append(lab)
        if handles:
            fig.legend([handles[lab] for lab in labels], labels, loc="center right", frameon=False)
        fig.suptitle(title, fontsize=9)
        return save(fig, stem)


def task_seeds(panels: list[dict[str, Any]], stem: Path) -> list[Path]:
    """Each task's primary metric, one panel per task: every seed a dot, mean ± std as a bar, the single-task
    reference's mean as a dashed line (its seeds' range as a band). ``panels``: {methods [(label, values)], ref
    (values), ylabel, title}."""
    n = len(panels)
    ncols = min(4, n)
    nrows = int(math.ceil(n / ncols))
    n_methods = max(len(p["methods"]) for p in panels)
    pw = max(3.0, 0.55 * n_methods + 1.4)
    fig_h = 3.1 * nrows
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(pw * ncols, fig_h), squeeze=False)
        fig.subplots_adjust(left=0.75 / (pw * ncols), right=0.99, bottom=1.0 / fig_h, top=1 - 0.3 / fig_h,
                            wspace=0.45, hspace=0.9)
        rng = np.random.default_rng(0)  # fixed jitter: the same figure every time
        for ax, p in zip(axes.flat, panels):
            methods = p["methods"]
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
            r = [x for x in p["ref"] if x is not None and math.isfinite(x)]
            if r:
                ax.axhline(float(np.mean(r)), color="#000000", ls="--", lw=1, label=f"single-task ref (n={len(r)})")
                if len(r) > 1:
                    ax.axhspan(min(r), max(r), color="#000000", alpha=0.07, lw=0)
                ax.legend(frameon=False, loc="best", fontsize=7)
            ax.set_xticks(range(len(methods)), [m for m, _ in methods], rotation=35, ha="right")
            ax.set_xlim(-0.6, len(methods) - 0.4)
            ax.set_ylabel(p["ylabel"])
            ax.set_title(p["title"])
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        return save(fig, stem)


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS points: window means (a long log stays readable and honest)."""
    if len(x) <= MAX_POINTS:
        return x, y
    k = int(math.ceil(len(x) / MAX_POINTS))
    n = len(x) // k * k
    return x[:n].reshape(-1, k).mean(1), y[:n].reshape(-1, k).mean(1)


def training(runs: list[dict[str, Any]], tasks: list[str], title: str, stem: Path) -> list[Path]:
    """Training curves of every run of a setting in one figure, one line per run (colour: method, line style:
    seed): total and per-task loss against iteration, the learning rate, per-task weights where logged, and the
    eval history where ``eval_every`` was set. One figure per setting, not per run: runs are compared on the same
    axes, and 200 runs draw in seconds. ``runs``: {label, seed, it (array), loss, losses {task: array}, lr,
    weights {task: array}, history [(it, {task: value})], metric {task: name}}."""
    labels = list(dict.fromkeys(r["label"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    refs = list(dict.fromkeys(r["label"] for r in runs if r.get("ref")))
    greys = ["#000000", "#666666", "#999999", "#333333", "#BBBBBB"]  # the references: one grey each

    def line_colour(label: str) -> str:
        return greys[refs.index(label) % len(greys)] if label in refs else colour(labels.index(label))

    dashes = ["-", "--", ":", "-."]
    panels: list[tuple[str, Any]] = [("total loss", lambda r: [(r["it"], r["loss"])])]
    for t in tasks:
        panels.append((f"{t} loss", lambda r, t=t: [(r["it"], r["losses"][t])] if t in r["losses"] else []))
    panels.append(("learning rate", lambda r: [(r["it"], r["lr"])] if r.get("lr") is not None else []))
    if any(r.get("weights") for r in runs):
        for t in tasks:
            panels.append((f"{t} weight", lambda r, t=t: [(r["it"], r["weights"][t])] if t in (r.get("weights") or {})
                           else []))
    if any(r.get("history") for r in runs):
        for t in tasks:
            def hist(r, t=t):
                pts = [(it, m[t]) for it, m in r.get("history") or [] if m.get(t) is not None]
                return [(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))] if pts else []
            metric = next((r["metric"].get(t) for r in runs if r.get("metric", {}).get(t)), "")
            panels.append((f"eval {t} {metric}", hist))
    ncols = min(4, len(panels))
    nrows = int(math.ceil(len(panels) / ncols))
    legend_h = 0.25 * int(math.ceil(len(labels) / 4)) + 0.3
    fig_h = 2.4 * nrows + 0.4 + legend_h
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, fig_h), squeeze=False)
        fig.subplots_adjust(left=0.07, right=0.98, bottom=(0.45 + legend_h) / fig_h, top=1 - 0.45 / fig_h,
                            wspace=0.35, hspace=0.7)
        for ax, (name, get) in zip(axes.flat, panels):
            drew, positive = False, True
            for r in runs:
                for x, y in get(r):
                    if len(x) == 0:
                        continue
                    xs, ys = _thin(np.asarray(x, float), np.asarray(y, float))
                    ax.plot(xs, ys, marker="o" if name.startswith("eval") else None, ms=3, lw=1,
                            color=line_colour(r["label"]), ls=dashes[seeds.index(r["seed"]) % 4])
                    drew = True
                    positive = positive and bool(np.all(ys[np.isfinite(ys)] > 0))
            ax.set_title(name)
            ax.set_xlabel("iteration")
            if name.endswith("loss") and drew and positive:
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
                ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            if not drew:
                ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=line_colour(lab), lw=1.5, label=lab) for lab in labels]
        handles += [Line2D([], [], color="#555555", ls=dashes[k % 4], lw=1, label=f"seed {s}")
                    for k, s in enumerate(seeds)]
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), frameon=False)
        fig.suptitle(title, fontsize=9)
        return save(fig, stem)


def mosaic(rows: list[list[np.ndarray | None]], gap: int = 4) -> np.ndarray:
    """Cells of one size (H, W, 3) on a white canvas with ``gap`` pixels between them; a missing cell is a light
    grey block. One image for the whole grid: one imshow instead of hundreds of axes."""
    h, w = next(c.shape[:2] for r in rows for c in r if c is not None)
    ncols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + gap) - gap, ncols * (w + gap) - gap, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, c in enumerate(r):
            y, x = i * (h + gap), j * (w + gap)
            if c is None or c.shape[:2] != (h, w):
                canvas[y:y + h, x:x + w] = 225
            else:
                canvas[y:y + h, x:x + w] = c[..., :3]
    return canvas


def qualitative(rows: list[dict[str, Any]], columns: list[str], title: str, stem: Path) -> list[Path]:
    """K images × (input, ground truth, each method): ``rows``: {label, cells: [RGB array or None per column]}."""
    cells = [r["cells"] for r in rows]
    if not any(c is not None for r in cells for c in r):
        cells = [[np.full((8, 8, 3), 225, np.uint8)] * len(columns) for _ in rows]
    img = mosaic(cells)
    h, w = next(c.shape[:2] for r in cells for c in r if c is not None)
    ncols, nrows = len(columns), len(rows)
    cell_w = 1.5
    cell_h = cell_w * h / w
    left, top = 0.9, 0.55
    fig_w, fig_h = cell_w * ncols + left + 0.1, cell_h * nrows + top + 0.1
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(fig_w, fig_h))
        ax = fig.add_axes((left / fig_w, 0.1 / fig_h, cell_w * ncols / fig_w, cell_h * nrows / fig_h))
        ax.imshow(img, interpolation="nearest", aspect="auto")
        ax.axis("off")
        for j, name in enumerate(columns):
            fig.text((left + cell_w * (j + 0.5)) / fig_w, 1 - (top - 0.08) / fig_h, name, ha="center",
                     va="bottom", fontsize=7, rotation=0 if len(name) < 16 else 15)
        for i, r in enumerate(rows):
            fig.text((left - 0.08) / fig_w, 1 - (top + cell_h * (i + 0.5)) / fig_h, r["label"], ha="right",
                     va="center", fontsize=6)
        missing = sum(c is None for r in rows for c in r["cells"])
        fig.suptitle(title + (f" ({missing} missing: light grey)" if missing else ""), fontsize=9)
        return save(fig, stem)
