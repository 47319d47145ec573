#!/usr/bin/env python
"""mtbench entry point: ``python bench.py --help``."""
import sys

from mtbench import threads

threads.configure_environment()  # before numpy/torch load: their BLAS/OpenMP runtimes read the thread count once

from mtbench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
