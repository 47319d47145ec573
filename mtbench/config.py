"""Recipes (YAML) and run configs; a run's id is a hash of everything that changes its result.

Recipes live in ``configs/<name>.yaml``. A recipe holds the optimisation settings plus
per-dataset and per-method sections, so one recipe can drive a whole grid of methods.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

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
    "backbone": "resnet18",
    "backbone_cfg": {},  # extra timm.create_model arguments, e.g. {drop_path_rate: 0.15} (InvPT's ViT-L)
    "eval": {"edge_protocol": "seism"},  # evaluator settings; edge_protocol: see metrics/boundary_protocol
    "datasets": {},  # dataset name -> dataset cfg (sizes, crop, cache_dir ...)
    "methods": {},  # method name -> method cfg (head widths, depths ...)
}


class ConfigError(ValueError):
    """A recipe or override that cannot be used; the message says what to change."""


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


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """A recipe by name (configs/<name>.yaml) or path, with ``key.sub=value`` overrides applied."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"recipe '{name_or_path}' not found (looked for {path}). "
            f"Known recipes: {', '.join(recipe_names())}; or pass a path to a YAML file."
        )
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    unknown = set(data) - set(RECIPE_DEFAULTS)
    if unknown:
        raise ConfigError(f"{path}: unknown recipe keys {sorted(unknown)}; allowed: {sorted(RECIPE_DEFAULTS)}")
    recipe = _merge(RECIPE_DEFAULTS, data)
    recipe.setdefault("name", path.stem)
    if recipe["name"] == "custom":
        recipe["name"] = path.stem
    for item in overrides or []:
        apply_override(recipe, item)
    validate_recipe(recipe)
    return recipe


def apply_override(recipe: dict, item: str) -> None:
    """``a.b=value`` with the value parsed as YAML (so numbers, lists and null work)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key=value, e.g. iterations=200 or optimizer.lr=0.01")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if parts[0] not in RECIPE_DEFAULTS:
        raise ConfigError(f"override '{item}': unknown recipe key '{parts[0]}'; allowed: {sorted(RECIPE_DEFAULTS)}")
    node = recipe
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{p}' is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def validate_recipe(r: dict) -> None:
    for key in ("iterations", "batch_size"):
        if not isinstance(r[key], int) or r[key] < 1:
            raise ConfigError(f"recipe '{r['name']}': {key} must be a positive integer, got {r[key]!r}")
    if r["optimizer"].get("name") not in ("sgd", "adam", "adamw"):
        raise ConfigError(f"recipe '{r['name']}': optimizer.name must be sgd, adam or adamw")
    if r["schedule"].get("name") not in ("poly", "constant"):
        raise ConfigError(f"recipe '{r['name']}': schedule.name must be poly or constant")
    from mtbench.metrics.boundary_protocol import PROTOCOLS

    if r["eval"].get("edge_protocol") not in PROTOCOLS:
        raise ConfigError(f"recipe '{r['name']}': eval.edge_protocol must be one of {', '.join(PROTOCOLS)}, "
                          f"got {r['eval'].get('edge_protocol')!r}")


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

    @property
    def dataset_cfg(self) -> dict[str, Any]:
        return dict(self.recipe["datasets"].get(self.dataset, {}))

    @property
    def method_cfg(self) -> dict[str, Any]:
        return dict(self.recipe["methods"].get(self.method, {}))

    def reference_recipe(self) -> dict[str, Any]:
        """The recipe minus method sections: runs sharing it are comparable (same data, schedule)."""
        return {k: v for k, v in self.recipe.items() if k not in ("methods", "description")}

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
        }

    @property
    def run_id(self) -> str:
        tasks = "+".join(self.tasks)
        return f"{self.method}_{self.dataset}_{self.backbone}_{tasks}_s{self.seed}_{stable_hash(self.identity(), 8)}"

    @property
    def setting_key(self) -> str:
        """Runs with equal setting keys (bar method, tasks, seed) may be compared in one table."""
        return stable_hash(
            {"dataset": self.dataset, "backbone": self.backbone, "recipe": self.reference_recipe(),
             "weights": self.identity()["backbone_weights"]},
            8,
        )

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
            backbone_weights=d.get("backbone_weights"),
        )
