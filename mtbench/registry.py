"""Name → factory registries, in the style of timm's ``register_model``/``create_model``.

Names are the API: recipes, the CLI and run records refer to methods, tasks, datasets and
backbones by name only, so adding one is one file with one decorator.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, Callable


class UnknownNameError(KeyError):
    """A name that no plugin registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry:
    """``section``: the recipe section keyed by this registry's names (``methods.<name>``); each entry may declare
    the keys its own section takes as ``cfg_keys`` (or a ``DEFAULTS`` dict), and the recipe is checked against
    them before any run starts (see ``mtbench.config.validate_plugin_sections``)."""

    def __init__(self, kind: str, section: str | None = None):
        self.kind, self.section = kind, section
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        load_plugins()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "(none)"
            close = difflib.get_close_matches(name, list(self._entries), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UnknownNameError(f"unknown {self.kind} '{name}'. Known {self.kind}s: {known}.{hint}")
        return self._entries[name]

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name in self._entries


METHODS = Registry("method", section="methods")
TASKS = Registry("task")
DATASETS = Registry("dataset", section="datasets")
BACKBONES = Registry("backbone")
# How the per-task losses become the parameter gradients (``weighting.<name>.<option>`` in a recipe).
WEIGHTINGS = Registry("weighting", section="weighting")

register_method = METHODS.register
register_task = TASKS.register
register_dataset = DATASETS.register
register_backbone = BACKBONES.register
register_weighting = WEIGHTINGS.register

# Packages whose every module registers something on import. `methods` and `tasks` live at the
# top level so that a new method or task is one new file there; nothing in mtbench names them.
PLUGIN_PACKAGES = ("tasks", "methods", "weightings", "mtbench.data", "mtbench.backbones")
_loaded = False


def declared_keys(entry: Any) -> set[str] | None:
    """The keys a plugin's recipe section may hold, if it declares them (``cfg_keys``, or a ``DEFAULTS`` dict)."""
    keys = getattr(entry, "cfg_keys", None)
    if keys is None and isinstance(getattr(entry, "DEFAULTS", None), dict):
        keys = entry.DEFAULTS
    return None if keys is None else set(keys)


def plugin_registries() -> list[Registry]:
    """Every registry whose names key a recipe section."""
    return [r for r in globals().values() if isinstance(r, Registry) and r.section]


def load_plugins() -> None:
    """Import every plugin module once, so that their decorators have run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for pkg_name in PLUGIN_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        if hasattr(pkg, "__path__"):
            for mod in pkgutil.iter_modules(pkg.__path__):
                if not mod.name.startswith("_"):
                    importlib.import_module(f"{pkg_name}.{mod.name}")
