"""``python bench.py report RESULTS``: the results as one page (``RESULTS/report/index.html``), readable offline."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results_dir", help="a results directory (holding runs/<run_id>/record.json)")
    p.add_argument("--out", default=None, help="output directory (default: <results_dir>/report)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes drawing figures (default: 2 when there are many figures, else 1)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mtbench.report.build import build_report

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    build_report(Path(args.results_dir), Path(args.out) if args.out else None, Console(), workers=args.workers)
    return 0
