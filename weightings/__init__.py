"""Weighting strategies, one file each (``@register_weighting("name")``); see ``mtbench/weighting.py`` for the
interface and the README section "Loss weighting and gradient aggregation" for the list."""
