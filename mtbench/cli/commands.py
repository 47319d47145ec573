"""The subcommands of ``bench.py``: name -> (module under mtbench.cli, one-line description). Each module has
``add_arguments(parser)`` and ``run(args) -> int`` and is imported only when its subcommand is used."""
from __future__ import annotations

SUBCOMMANDS = {
    "leaderboard": ("leaderboard", "rebuild the leaderboard from the run records in a results directory"),
    "status": ("status", "one table of a grid: done / running / pending / failed per run, then the leaderboard"),
    "eval-boundary": ("eval_boundary", "score a folder of edge maps as SEISM / BSDS / SBD do (odsF / oisF / AP), no MATLAB"),
    "data": ("data", "'data check': verify a dataset folder (counts, shapes, ranges, unreadable files)"),
    "profile": ("profile", "params, GFLOPs, memory and images/s of methods at a dataset's input size"),
    "report": ("report", "write RESULTS/report/index.html: tables, trade-off figures, training curves, predictions, "
                         "significance over seeds"),
    "predict": ("predict", "a finished run's model on a folder of images: each task's prediction as PNG/NPY and as a "
                           "picture"),
}
