"""Recipes (YAML) and run configs; a run's id is a hash of everything that changes its result.

Recipes live in ``configs/<name>.yaml``. A recipe holds the optimisation settings plus
per-dataset and per-method sections, so one recipe can drive a whole grid of methods.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtbench.recipe_check import ConfigError, suggest, validate, validate_plugin_sections

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class RecipeLoader(yaml.SafeLoader):
    """yaml.safe_load, but ``1e-4`` is a number (YAML 1.2), not the string PyYAML's YAML 1.1 makes of it."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 — a SafeLoader subclass

# Keys a recipe may hold, with defaults; anything else is a typo and is rejected.
RECIPE_DEFAULTS: dict[str, Any] = {
    "name": "custom",
    "description": "",
    "iterations": 1000,
    "batch_size": 8,
    "optimizer": {"name": "sgd", "lr": 0.001, "momentum": 0.9, "weight_decay": 5e-4},
    "schedule": {"name": "poly", "power": 0.9, "warmup_iters": 0, "warmup_ratio": 0.1},
    "grad_clip": None,
    "amp": True,  # bf16 autocast, only when the run is on CUDA
    "sync_bn": False,  # convert BatchNorm to SyncBatchNorm in data-parallel runs (CUDA only)
    "eval_every": 0,  # 0 = only at the end
    "checkpoint_every": 500,
    "num_workers": 2,
    # Speed options (mtbench/perf.py). Off by default, and left out of run ids while off (HASH_NEUTRAL).
    "perf": {"channels_last": False, "compile": False, "tf32": False},
    "backbone": "resnet18",
    "backbone_cfg": {},  # extra timm.create_model arguments, e.g. {drop_path_rate: 0.15} (InvPT's ViT-L)
    "eval": {"edge_protocol": "seism"},  # evaluator settings; edge_protocol: see metrics/boundary_protocol
    "datasets": {},  # dataset name -> dataset cfg (sizes, crop, cache_dir ...)
    "methods": {},  # method name -> method cfg (head widths, depths ...)
    "loss_weights": {},  # task name -> weight of its loss; default: the papers' values (tasks/*.py ``weights``)
    "weighting": {},  # weighting strategy name -> its options (weightings/*.py); which one: RunConfig.weighting
}


# Keys added after run ids existed: while they hold these values a run's id is what it was without them.
# (section, key) -> value; ``optimizer.fused`` is optional (absent = False).
HASH_NEUTRAL: dict[tuple[str, str], Any] = {
    **{("perf", k): v for k, v in RECIPE_DEFAULTS["perf"].items()},
    ("optimizer", "fused"): False,
}


def without_neutral_defaults(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe minus the HASH_NEUTRAL keys at their neutral value (and a section they leave empty)."""
    out = dict(recipe)
    for (section, key), neutral in HASH_NEUTRAL.items():
        sub = out.get(section)
        if isinstance(sub, dict) and key in sub and sub[key] == neutral and type(sub[key]) is type(neutral):
            sub = {k: v for k, v in sub.items() if k != key}
            out[section] = sub
    for section in {s for s, _ in HASH_NEUTRAL}:
        if out.get(section) == {} and section not in ("optimizer",):
            del out[section]
    return out


def _merge(base: dict, update: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{path}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def recipe_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"recipe '{name_or_path}' not found (looked for {path}).{suggest(name_or_path, recipe_names())}"
                          f" Known recipes: {', '.join(recipe_names())}; or pass a path to a YAML file.")
    return path


def read_recipe_file(path: Path) -> dict[str, Any]:
    """The recipe file merged over the defaults, before overrides."""
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read ({e})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of key: value, got a {type(data).__name__}")
    recipe = _merge(RECIPE_DEFAULTS, data)
    recipe.setdefault("name", path.stem)
    if recipe["name"] == "custom":
        recipe["name"] = path.stem
    return recipe


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """A recipe by name (configs/<name>.yaml) or path, with ``key.sub=value`` overrides applied, every key and
    value checked. ``recipe["overrides"]`` lists what differs from the file (for the leaderboard's setting line;
    not part of the run id, which hashes the resolved values)."""
    path = recipe_path(name_or_path)
    base = read_recipe_file(path)
    validate(base, RECIPE_DEFAULTS)
    recipe = copy.deepcopy(base)
    for item in overrides or []:
        apply_override(recipe, item)
    for section in ("datasets", "methods", "weighting"):
        for k, v in list(recipe.get(section, {}).items()):
            recipe[section][k] = {} if v is None else v
    validate(recipe, RECIPE_DEFAULTS)
    validate_plugin_sections(recipe)
    _check_weighting(recipe)
    recipe["overrides"] = changes(base, recipe)
    return recipe


def changes(base: Any, new: Any, prefix: str = "") -> list[str]:
    """``key.sub=value`` for every leaf of ``new`` that differs from ``base`` (YAML-formatted values)."""
    if isinstance(new, dict) and (base is None or isinstance(base, dict)):
        base = base or {}
        out = []
        for k in sorted(set(new) | set(base), key=str):
            if k == "overrides":
                continue
            if k not in new:
                out.append(f"{prefix}{k}=null")
            else:
                out += changes(base.get(k), new[k], f"{prefix}{k}.")
        return out
    if base == new and type(base) is type(new):
        return []
    text = yaml.safe_dump(new, default_flow_style=True, width=1000).strip()
    return [f"{prefix.rstrip('.')}={text.removesuffix(chr(10) + '...').strip()}"]


def apply_override(recipe: dict, item: str) -> None:
    """``a.b=value`` with the value parsed as YAML (so numbers, lists and null work)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key=value, e.g. iterations=200 or optimizer.lr=0.01")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if parts[0] not in RECIPE_DEFAULTS:
        raise ConfigError(f"override '{item}': unknown recipe key '{parts[0]}'.{suggest(parts[0], RECIPE_DEFAULTS)} "
                          f"Known keys: {', '.join(sorted(RECIPE_DEFAULTS))}")
    node = recipe
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if node is None:
            node = {}
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{p}' is not a section")
    try:
        node[parts[-1]] = parse_yaml(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{item}': the value is not valid YAML ({getattr(e, 'problem', e)})") from None


def validate_recipe(r: dict) -> None:
    """Every key and value of a resolved recipe (kept for callers that build recipes in code)."""
    validate(r, RECIPE_DEFAULTS)
    validate_plugin_sections(r)
    _check_weighting(r)


def _check_weighting(recipe: dict) -> None:
    from mtbench.weighting import check_recipe

    check_recipe(recipe)


def default_recipe(dataset: str) -> str:
    """One rule for every command: the recipe a dataset declares (``default_recipe`` on its builder: synthetic →
    smoke), else the recipe named like the dataset, else none: the caller must name one."""
    from mtbench.registry import DATASETS

    builder = DATASETS.get(dataset)
    name = getattr(builder, "default_recipe", None) or (dataset if dataset in recipe_names() else None)
    if name:
        return name
    fitting = [n for n in recipe_names() if dataset in (read_recipe_file(recipe_path(n)).get("datasets") or {})]
    raise ConfigError(f"dataset '{dataset}' has no default recipe; pass --recipe NAME"
                      + (f" (recipes with a datasets.{dataset} section: {', '.join(fitting)})" if fitting else
                         f" or a YAML file with a datasets.{dataset} section (known recipes: "
                         f"{', '.join(recipe_names())})"))


def stable_hash(obj: Any, n: int = 10) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:n]


@dataclass(frozen=True)
class RunConfig:
    """One run: (method, dataset, tasks, backbone, seed, recipe). Paths don't enter the id."""

    method: str
    dataset: str
    tasks: tuple[str, ...]
    backbone: str
    seed: int
    recipe: dict[str, Any] = field(hash=False, compare=False)
    data_dir: str | None = field(default=None, hash=False, compare=False)
    backbone_weights: str | None = field(default=None, hash=False, compare=False)
    #: how the per-task losses are combined (weightings/*.py); "fixed" is the recipe's weighted sum
    weighting: str = "fixed"

    @property
    def dataset_cfg(self) -> dict[str, Any]:
        return dict(self.recipe["datasets"].get(self.dataset, {}))

    def data_cfg(self, cache_dir: str | Path) -> dict[str, Any]:
        """What the dataset builder gets: the recipe's section, the cache directory and ``--data-dir``."""
        cfg = {"cache_dir": str(cache_dir), **self.dataset_cfg}
        if self.data_dir:
            cfg["data_dir"] = self.data_dir
        return cfg

    @property
    def method_cfg(self) -> dict[str, Any]:
        return dict(self.recipe["methods"].get(self.method, {}))

    def reference_recipe(self) -> dict[str, Any]:
        """The recipe minus method sections: runs sharing it are comparable (same data, schedule). ``overrides``
        only describes how the values were given, so it changes no id; nor do speed options left off (HASH_NEUTRAL).
        Loss weights and strategy options are left out here and enter ``identity`` / ``setting_key`` only where they
        differ from the defaults, so that the ids of runs made before either existed stay the same."""
        kept = {k: v for k, v in self.recipe.items()
                if k not in ("methods", "description", "overrides", "loss_weights", "weighting")}
        return without_neutral_defaults(kept)

    def loss_weight_changes(self, tasks: tuple[str, ...] | None = None) -> dict[str, float]:
        """The recipe's loss weights that differ from the papers' (of ``tasks``; default: this run's tasks)."""
        from mtbench.weighting import changed_loss_weights

        return changed_loss_weights(self.recipe, self.tasks if tasks is None else tasks)

    @property
    def weighting_cfg(self) -> dict[str, Any]:
        """This run's strategy options, the strategy's defaults filled in."""
        from mtbench.weighting import strategy_options

        return strategy_options(self.weighting, self.recipe)

    def identity(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "dataset": self.dataset,
            "tasks": list(self.tasks),
            "backbone": self.backbone,
            "seed": self.seed,
            "recipe": self.reference_recipe(),
            "method_cfg": self.method_cfg,
            "backbone_weights": Path(self.backbone_weights).name if self.backbone_weights else None,
            **({"loss_weights": self.loss_weight_changes()} if self.loss_weight_changes() else {}),
            # absent for "fixed": the ids of the runs made before strategies existed stay the same
            **({"weighting": {"name": self.weighting, "options": self.weighting_cfg}}
               if self.weighting != "fixed" else {}),
        }

    @property
    def run_id(self) -> str:
        tasks = "+".join(self.tasks)
        method = self.method if self.weighting == "fixed" else f"{self.method}-{self.weighting}"
        return f"{method}_{self.dataset}_{self.backbone}_{tasks}_s{self.seed}_{stable_hash(self.identity(), 8)}"

    @property
    def setting_key(self) -> str:
        """Runs with equal setting keys (bar method, weighting strategy, tasks, seed) may be compared in one table."""
        key = {"dataset": self.dataset, "backbone": self.backbone, "recipe": self.reference_recipe(),
               "weights": self.identity()["backbone_weights"]}
        changed = self.loss_weight_changes(tuple(self.recipe.get("loss_weights") or ()))
        if changed:  # every task's, so that a multi-task run and its single-task references share the key
            key["loss_weights"] = changed
        return stable_hash(key, 8)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks)
        d["run_id"] = self.run_id
        d["setting_key"] = self.setting_key
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return cls(
            method=d["method"], dataset=d["dataset"], tasks=tuple(d["tasks"]), backbone=d["backbone"],
            seed=int(d["seed"]), recipe=d["recipe"], data_dir=d.get("data_dir"),
            backbone_weights=d.get("backbone_weights"), weighting=d.get("weighting", "fixed"),
        )
