"""Datasets: each module registers a builder ``(split, tasks, cfg) -> torch Dataset`` by name.

See ``base.py`` for the sample contract and the builder attributes."""
