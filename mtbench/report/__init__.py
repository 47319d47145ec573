"""The results report: ``python bench.py report RESULTS`` → ``RESULTS/report/index.html``.

One page per results directory, readable from disk with no server and no network (CSS inline, figures as PNG
files beside it, a PDF of each beside the PNG for papers). Built from the run records, the runs' training logs
and their qualitative images alone. Modules: ``collect`` (records → settings), ``significance`` (seeds),
``colours`` (fixed colour maps), ``figures`` (matplotlib), ``html`` (the page), ``build`` (all of it, with
progress).
"""
