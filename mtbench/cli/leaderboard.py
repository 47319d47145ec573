"""``python bench.py leaderboard RESULTS``: rebuild every table from the run records alone."""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results_dir", help="a results directory (holding runs/<run_id>/record.json)")
    p.add_argument("--out", default=None, help="output directory (default: <results_dir>/leaderboards)")


def run(args: argparse.Namespace) -> int:
    console = Console()
    from mtbench.leaderboard import to_markdown, write_leaderboard

    skipped: list[str] = []
    tables, path = write_leaderboard(Path(args.results_dir), Path(args.out) if args.out else None, skipped=skipped)
    for t in tables:
        console.print(to_markdown(t), markup=False, highlight=False, soft_wrap=True)
    if not tables:
        console.print("no finished runs found")
    for note in skipped:  # one unreadable record never hides the others
        console.print(note, style="yellow", markup=False, soft_wrap=True)
    console.print(f"leaderboard written to {path}", markup=False, soft_wrap=True)
    return 0
