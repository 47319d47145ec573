"""The command line as a researcher uses it: help, errors, a grid with references, leaderboard."""
import json

import pytest

from mtbench.cli import main
from mtbench.cli.run import parser as run_parser


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for action in run_parser()._actions:
        for opt in action.option_strings:
            assert opt in out
    assert "leaderboard" in out and "eval-boundary" in out


@pytest.mark.parametrize("argv, needle", [
    (["--methods", "nope"], "Known methods:"),
    (["--dataset", "nope"], "Known datasets:"),
    (["--tasks", "semseg,nope"], "Known tasks:"),
    (["--backbone", "nope", "--set", "iterations=1"], "Known backbones:"),
    (["--recipe", "nope"], "Known recipes:"),
    (["--backbone-weights", "/no/such/file.pth"], "local checkpoint"),
    (["leaderboard", "/no/such/results"], "does not exist"),
])
def test_bad_input_names_the_problem(argv, needle, capsys, tmp_path):
    rc = main(argv + (["--results", str(tmp_path)] if argv[0] != "leaderboard" else []))
    out = capsys.readouterr().out
    assert needle in out.replace("\n", " ")
    assert rc != 0


def test_grid_schedules_references_and_skips_finished_runs(tmp_path, tiny_overrides, capsys):
    argv = ["--methods", "baseline", "--tasks", "semseg,depth", "--results", str(tmp_path)]
    for o in tiny_overrides:
        argv += ["--set", o]
    assert main(argv) == 0
    records = sorted((tmp_path / "runs").glob("*/record.json"))
    methods = sorted((json.loads(p.read_text())["method"], tuple(json.loads(p.read_text())["tasks"])) for p in records)
    assert methods == [("baseline", ("semseg", "depth")), ("single", ("depth",)), ("single", ("semseg",))]
    board = (tmp_path / "leaderboards" / "leaderboard.md").read_text()
    assert "| **baseline** |" in board and "| **single-task refs** |" in board and "trivial" in board
    mtimes = [p.stat().st_mtime_ns for p in records]
    capsys.readouterr()
    assert main(argv) == 0  # the same command again: nothing is re-run
    assert [p.stat().st_mtime_ns for p in records] == mtimes
    (tmp_path / "leaderboards" / "leaderboard.md").unlink()
    assert main(["leaderboard", str(tmp_path)]) == 0
    assert (tmp_path / "leaderboards" / "leaderboard.md").read_text() == board
