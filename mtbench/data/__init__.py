"""Datasets: each module registers a builder ``(split, tasks, cfg) -> torch Dataset`` by name.

A builder may carry ``default_tasks`` (used when --tasks is not given)."""
