"""Command line: ``python bench.py [run options]`` runs a grid (mtbench.cli.run); ``python bench.py SUBCOMMAND``
runs one module of this package (mtbench.cli.commands lists them). Errors a user can fix are one line, no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from rich.console import Console
from rich.text import Text

from mtbench.cli.commands import SUBCOMMANDS


def subcommand_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module_name, description = SUBCOMMANDS[name]
    module = importlib.import_module(f"mtbench.cli.{module_name}")
    p = argparse.ArgumentParser(prog=f"bench.py {name}", description=description)
    module.add_arguments(p)
    return p, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local files only
    console = Console()
    try:
        if argv and argv[0] in SUBCOMMANDS:
            parser, module = subcommand_parser(argv[0])
            return module.run(parser.parse_args(argv[1:]))
        from mtbench.cli import run

        return run.run(run.parser().parse_args(argv), console)
    except KeyboardInterrupt as e:  # Ctrl-C, or a signal a run turned into Interrupted after saving
        from mtbench.signals import Interrupted

        said = f"{e}. Finished runs are kept" if isinstance(e, Interrupted) else \
            "interrupted. Finished runs are kept; re-running the same command resumes the rest"
        console.print(Text.assemble(("stopped: ", "bold yellow"), said), soft_wrap=True)
        return 128 + getattr(e, "signum", 2)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        console.print(Text.assemble(("error: ", "bold red"), str(e)), soft_wrap=True)  # no markup: paths hold '['
        return 2
