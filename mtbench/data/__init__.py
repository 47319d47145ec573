"""Datasets: each module registers a builder ``(split, cfg) -> torch Dataset`` by name."""
