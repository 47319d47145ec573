"""mtbench: a benchmark for multi-task dense prediction."""

__version__ = "0.1.0"
