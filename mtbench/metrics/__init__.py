"""Standardized evaluators; see ../shared/DESIGN.md 'Standard definitions'."""
from mtbench.metrics.base import Evaluator

__all__ = ["Evaluator"]
