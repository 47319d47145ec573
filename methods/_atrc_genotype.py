"""ATRC genotypes: which context each (target, source) task pair uses, from a published search or by hand.

The three genotypes the release publishes (``brdav/atrc`` ``genotypes/*.json``) ship in ``atrc_data/``
with their source named; entries there are the release's codes 0–4 (none, global, local, t-label,
s-label). A genotype given in a recipe may use the codes or the names.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from methods._atrc_context import CONTEXTS

DATA_DIR = Path(__file__).with_name("atrc_data")
NYUD_TASKS = frozenset({"semseg", "depth", "normals", "edge"})
PASCAL_TASKS = frozenset({"semseg", "human_parts", "sal", "normals", "edge"})
HRNET18 = "hrnet_w18_small_v2"  # the release's HRNet18-S (hrnetv2_w18_small)
# Published genotype → the task set and (mtbench) backbone it was searched for.
SEARCHED = {"nyud_hrnet18": (NYUD_TASKS, HRNET18), "nyud_hrnet48": (NYUD_TASKS, "hrnet_w48"),
            "pascal_hrnet18": (PASCAL_TASKS, HRNET18)}
PUBLISHED = tuple(SEARCHED)


def default_genotype(tasks: list[str], backbone: str | None) -> str | None:
    """The search published for exactly the run's tasks on its backbone, else the HRNet-18 one for them."""
    matches = [n for n, (task_set, _) in SEARCHED.items() if task_set == frozenset(tasks)]
    for wanted in (backbone, HRNET18):
        for name in matches:
            if SEARCHED[name][1] == wanted:
                return name
    return None


def load_published(name: str) -> dict[str, dict[str, Any]]:
    if name not in PUBLISHED:
        raise ValueError(f"method 'atrc': unknown genotype '{name}'; published genotypes: {', '.join(PUBLISHED)} "
                         f"(or give a mapping target → source → context)")
    return json.loads((DATA_DIR / f"genotype_{name}.json").read_text())["data"]


def _context_name(value: Any, where: str) -> str:
    if isinstance(value, bool):  # bool is an int; True/False would otherwise read as global/none
        value = str(value)
    if isinstance(value, int) and 0 <= value < len(CONTEXTS):
        return CONTEXTS[value]
    if isinstance(value, str) and value.lower() in CONTEXTS:
        return value.lower()
    raise ValueError(f"method 'atrc': context {value!r} for {where} is not one of {', '.join(CONTEXTS)} "
                     f"(or the release's codes 0-{len(CONTEXTS) - 1})")


def resolve(tasks: list[str], genotype: Any = None, context: Any = None,
            backbone: str | None = None) -> dict[str, dict[str, str]]:
    """target → source → context name for every pair of ``tasks`` (a genotype's other tasks are dropped)."""
    if genotype is not None and context is not None:
        raise ValueError("method 'atrc': give either 'genotype' (per task pair) or 'context' (one for all pairs)")
    if context is not None:
        kind = _context_name(context, "every task pair")
        return {t: {s: kind for s in tasks} for t in tasks}
    if genotype is None:
        genotype = default_genotype(tasks, backbone)
        if genotype is None:
            raise ValueError(f"method 'atrc': no published genotype for the tasks {tasks}; set "
                             f"methods.atrc.genotype to one of {', '.join(PUBLISHED)} (if it covers these tasks) or "
                             f"to a mapping target → source → context, or methods.atrc.context to one of "
                             f"{', '.join(CONTEXTS)}")
    name = genotype if isinstance(genotype, str) else "the given genotype"
    table = load_published(genotype) if isinstance(genotype, str) else genotype
    if not isinstance(table, Mapping):
        raise ValueError(f"method 'atrc': genotype must be a name or a mapping target → source → context, "
                         f"got {type(table).__name__}")
    out = {}
    for t in tasks:
        row = table.get(t)
        missing = [s for s in tasks if not isinstance(row, Mapping) or s not in row]
        if missing:
            raise ValueError(f"method 'atrc': {name} has no context for target '{t}' from source(s) {missing}; "
                             f"it must cover every pair of the run's tasks {tasks}")
        out[t] = {s: _context_name(row[s], f"{t} ← {s}") for s in tasks}
    return out


def label_tasks(genotype: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Tasks whose initial prediction some block reads (the release's ``get_aux_tasks``): a target with a
    t-label source, or a source of an s-label block. Only these get an initial prediction."""
    tasks = list(genotype)
    return [t for t in tasks
            if any(genotype[t][s] == "tlabel" for s in tasks) or any(genotype[u][t] == "slabel" for u in tasks)]

