"""What a recipe may hold, checked before any run starts: every key (top level, fixed sections, the sections of
plugins) against the known ones with a close-name suggestion, and every value against its type and range, so a
typo fails in one line instead of in every run, or never.

Fixed sections have their key lists here. Sections keyed by plugin names (``datasets.<name>``,
``methods.<name>``, any registry created with a ``section``) are checked against the keys the plugin declares
(``cfg_keys`` or a ``DEFAULTS`` dict on the registered builder); a plugin that declares none is checked by its
own builder when a run builds it. ``backbone_cfg`` goes to ``timm.create_model``: the keys the backbone wrapper
owns are refused here; the rest are checked when ``mtbench.preflight`` builds the backbone on the meta device.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Callable

Check = Callable[[Any], bool]


class ConfigError(ValueError):
    """A recipe or override that cannot be used; the message says what to change."""


def suggest(name: str, known) -> str:
    close = difflib.get_close_matches(str(name), sorted(map(str, known)), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _int(lo: int) -> tuple[Check, str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo,
            "a positive integer" if lo == 1 else f"an integer ≥ {lo}")


def _num(lo: float, strict: bool = False, hi: float = math.inf) -> tuple[Check, str]:
    def ok(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
            (v > lo if strict else v >= lo) and v <= hi

    what = f"a number {'>' if strict else '≥'} {lo:g}" + (f" and ≤ {hi:g}" if hi != math.inf else "")
    return ok, what


def _choice(*names: str) -> tuple[Check, str]:
    return (lambda v: v in names), "one of " + ", ".join(names)


def _optional(check: tuple[Check, str]) -> tuple[Check, str]:
    return (lambda v: v is None or check[0](v)), f"null or {check[1]}"


BOOL = ((lambda v: isinstance(v, bool)), "true or false")
TEXT = ((lambda v: isinstance(v, str)), "a string")
BETAS = ((lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_num(0, hi=1)[0](b) and b < 1 for b in v)),
         "two numbers in [0, 1), e.g. [0.9, 0.999]")


def _named(module: str, name: str) -> list[str]:
    import importlib

    return list(getattr(importlib.import_module(module), name))


def _thresholds() -> tuple[Check, str]:
    named = _named("mtbench.metrics.boundary", "NAMED_THRESHOLDS")
    return ((lambda v: v is None or v in named or _int(1)[0](v) or
             (isinstance(v, list) and bool(v) and all(_num(0, hi=1)[0](t) for t in v))),
            f"null (the protocol's), {' or '.join(map(repr, named))}, a count of uniform thresholds, or a list of "
            f"thresholds in [0, 1]")


def _protocol() -> tuple[Check, str]:
    return _choice(*_named("mtbench.metrics.boundary_protocol", "PROTOCOLS"))

# Top-level values (sections are below). A key of RECIPE_DEFAULTS that is in neither is only checked for presence.
TOP: dict[str, tuple[Check, str]] = {
    "name": TEXT, "description": TEXT, "backbone": TEXT, "iterations": _int(1), "batch_size": _int(1),
    "checkpoint_every": _int(1), "eval_every": _int(0), "num_workers": _int(0),
    "grad_clip": _optional(_num(0, strict=True)), "amp": BOOL, "sync_bn": BOOL,
}
SECTIONS: dict[str, dict[str, tuple[Check, str]]] = {
    "optimizer": {"name": _choice("sgd", "adam", "adamw"), "lr": _num(0, strict=True), "momentum": _num(0),
                  "weight_decay": _num(0), "nesterov": BOOL, "betas": BETAS,
                  "fused": BOOL},  # torch's fused optimizer kernel (mtbench/perf.py)
    "schedule": {"name": _choice("poly", "constant", "step"), "power": _num(0), "warmup_iters": _int(0),
                 "warmup_ratio": _num(0, hi=1), "step_size": _int(1), "gamma": _num(0, strict=True, hi=1)},
    "perf": {"channels_last": BOOL, "compile": BOOL, "tf32": BOOL},  # speed options, see mtbench/perf.py
    "eval": {"edge_protocol": None, "edge_thresholds": None, "edge_nms": _optional(BOOL),
             "edge_workers": _optional(_int(1))},
}
LAZY = {("eval", "edge_protocol"): _protocol, ("eval", "edge_thresholds"): _thresholds}  # names from the metrics
# backbone_cfg keys the wrapper sets itself or forbids, with why.
BACKBONE_OWNED = {
    "pretrained": "weights are never downloaded: pass --backbone-weights PATH",
    "features_only": "the backbone wrapper always builds a feature extractor",
    "out_indices": "each backbone's feature levels are fixed by its spec in mtbench/backbones.py",
    "img_size": "the input size comes from the dataset (datasets.<name>.pad_size or height/width)",
}


def check_keys(where: str, given: dict, known, recipe_name: str) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        key = unknown[0]
        raise ConfigError(f"recipe '{recipe_name}': unknown key '{where}{key}'.{suggest(key, known)} "
                          f"Known keys of {where.rstrip('.') or 'a recipe'}: {', '.join(sorted(known)) or '(none)'}")


def check_value(path: str, value: Any, check: tuple[Check, str], recipe_name: str) -> None:
    if not check[0](value):
        raise ConfigError(f"recipe '{recipe_name}': {path} must be {check[1]}, got {value!r}")


def validate(recipe: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Keys and values of the fixed part of a recipe (plugin sections: ``validate_plugin_sections``)."""
    name = recipe.get("name", "?")
    check_keys("", recipe, set(defaults) | {"overrides"}, name)
    for key, value in recipe.items():
        if isinstance(defaults.get(key), dict):
            if not isinstance(value, dict):
                raise ConfigError(f"recipe '{name}': {key} must be a section (a mapping of key: value), got "
                                  f"{value!r}; e.g. {key}: {defaults[key] or '{}'}")
        elif key in TOP:
            check_value(key, value, TOP[key], name)
    for section, schema in SECTIONS.items():
        if section in recipe:
            check_keys(f"{section}.", recipe[section], schema, name)
            for key, value in recipe[section].items():
                check = schema[key] or LAZY[(section, key)]()
                check_value(f"{section}.{key}", value, check, name)
    schedule = recipe.get("schedule") or {}
    if schedule.get("name") == "step" and "step_size" not in schedule:
        raise ConfigError(f"recipe '{name}': schedule step needs schedule.step_size (iterations between lr drops), "
                          f"e.g. schedule: {{name: step, step_size: 9900, gamma: 0.5}}")
    for key, why in BACKBONE_OWNED.items():
        if key in recipe.get("backbone_cfg", {}):
            raise ConfigError(f"recipe '{name}': backbone_cfg.{key} cannot be set: {why}")


def validate_plugin_sections(recipe: dict[str, Any]) -> None:
    """``<section>.<plugin>`` names registered plugins, and each holds only the keys that plugin declares."""
    from mtbench.registry import declared_keys, plugin_registries

    name = recipe.get("name", "?")
    for registry in plugin_registries():
        section = recipe.get(registry.section)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"recipe '{name}': {registry.section} must be a section keyed by {registry.kind} "
                              f"name, got {section!r}")
        for plugin, cfg in section.items():
            if plugin not in registry:
                raise ConfigError(f"recipe '{name}': {registry.section}.{plugin}: unknown {registry.kind} "
                                  f"'{plugin}'.{suggest(plugin, registry.names())} Known: {', '.join(registry.names())}")
            if cfg is None:
                continue
            if not isinstance(cfg, dict):
                raise ConfigError(f"recipe '{name}': {registry.section}.{plugin} must be a section of options, got "
                                  f"{cfg!r}")
            known = declared_keys(registry.get(plugin))
            if known is not None:
                check_keys(f"{registry.section}.{plugin}.", cfg, known, name)
