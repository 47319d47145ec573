#!/usr/bin/env python
"""mtbench entry point: ``python bench.py --help``."""
import sys

from mtbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
