"""Units, decimals and directions of metrics, from the task registry: one place for every table and figure.

A record holds numbers only; what they mean (a task's primary metric, its direction, its unit) is the task's and
its evaluator's, so a table whose runs all failed still names its metrics right, and every table shows one
scale: percentages as 0–100 with two decimals, metres with three, degrees with two.
"""
from __future__ import annotations

from functools import lru_cache

#: decimals per unit: one number of decimals for every cell of a column
DECIMALS = {"%": 2, "m": 3, "°": 2, "": 4}


@lru_cache(maxsize=None)
def _task(name: str):
    from mtbench.registry import TASKS

    try:
        return TASKS.get(name)
    except KeyError:  # a record of a task this installation does not know: numbers without a unit
        return None


def unit(task: str, metric: str) -> str:
    """The unit of ``task``'s ``metric`` ('%', 'm', '°' or '' for none or unknown)."""
    if metric == "loss":
        return ""
    t = _task(task)
    if t is None:
        return ""
    units = getattr(t.evaluator_class(), "units", {})
    if metric.startswith("IoU/"):
        return units.get("mIoU", "")
    return units.get(metric, "")


def decimals(task: str, metric: str) -> int:
    return DECIMALS.get(unit(task, metric), 4)


def primary(task: str) -> tuple[str, bool] | None:
    """A registered task's primary metric and whether higher is better (None for an unknown task)."""
    t = _task(task)
    if t is None or not t.primary_metric:
        return None
    return t.primary_metric, bool(t.higher_is_better(t.primary_metric))
