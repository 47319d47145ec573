"""``python bench.py data check``: verify a dataset folder (counts, shapes, ranges, unreadable files)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mtbench.data import check

    sub = p.add_subparsers(dest="action", required=True)
    check.add_arguments(sub.add_parser("check", help="verify a dataset folder"))


def run(args: argparse.Namespace) -> int:
    from mtbench.data import check

    return check.run(args)
