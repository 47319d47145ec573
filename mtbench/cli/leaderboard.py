"""``python bench.py leaderboard RESULTS``: rebuild every table from the run records alone."""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

FORMATS = ("markdown", "csv", "latex")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results_dir", help="a results directory (holding runs/<run_id>/record.json)")
    p.add_argument("--out", default=None, help="output directory (default: <results_dir>/leaderboards)")
    p.add_argument("--format", choices=FORMATS, default="markdown",
                   help="what to print: markdown (default), csv, or latex (booktabs, best per column in bold, "
                        "mean ± std); all three are written to the output directory (leaderboard.md, one CSV per "
                        "table, leaderboard.tex)")


def run(args: argparse.Namespace) -> int:
    console = Console()
    from mtbench.latex import to_latex
    from mtbench.leaderboard import to_frame, to_markdown, write_leaderboard

    skipped: list[str] = []
    tables, path = write_leaderboard(Path(args.results_dir), Path(args.out) if args.out else None, skipped=skipped)
    for t in tables:
        text = {"markdown": to_markdown, "latex": to_latex,
                "csv": lambda t: f"# {t.title}\n" + to_frame(t).to_csv(index=False)}[args.format](t)
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    if not tables:
        console.print("no finished runs found")
    for note in skipped:  # one unreadable record never hides the others
        console.print(note, style="yellow", markup=False, soft_wrap=True)
    console.print(f"leaderboard written to {path} (and leaderboard.tex, one CSV per table, beside it)",
                  markup=False, soft_wrap=True)
    return 0
