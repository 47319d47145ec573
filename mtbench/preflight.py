"""Everything about a grid that can be known before any run starts, checked once, in order of cost: names, the
recipe (already checked key by key when loaded), devices against the batch, the backbone's timm options, the
split sizes against the batch, then the data itself (the fast part of ``data check`` on a real dataset; the
synthetic scenes are rendered). A typo or a broken dataset fails here in one line, not once per run, and not
after three runs have trained."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from mtbench.config import ConfigError, RunConfig
from mtbench.registry import BACKBONES, DATASETS, METHODS, TASKS


class DataProblem(ValueError):
    """A dataset folder a grid cannot train on; the message lists the bad files and the fix."""


def check_devices(devices: int, batch_size: int) -> None:
    if devices < 1:
        raise ConfigError(f"--devices {devices}: give the number of processes (GPUs) per run, 1 or more")
    if batch_size % devices:
        fits = [d for d in range(1, batch_size + 1) if batch_size % d == 0]
        raise ConfigError(f"--devices {devices} does not divide the recipe's global batch_size {batch_size}: each "
                          f"process takes an equal slice. Use --devices {', '.join(map(str, fits))}, or --set "
                          f"batch_size=N with N a multiple of {devices}")


def check_backbone(cfg: RunConfig, image_size: tuple[int, int]) -> None:
    """The recipe's ``backbone_cfg`` goes to ``timm.create_model``: build the backbone on the meta device (no
    memory, no weights) so that timm itself says which option it does not take."""
    import torch

    options = cfg.recipe.get("backbone_cfg") or {}
    if not options:
        return
    try:
        with torch.device("meta"):
            BACKBONES.get(cfg.backbone)(img_size=tuple(image_size), checkpoint=None, **options)
    except TypeError as e:
        raise ConfigError(f"recipe '{cfg.recipe['name']}': backbone_cfg {options} is not accepted by backbone "
                          f"'{cfg.backbone}' ({e}); see the timm model's arguments") from None


def check_methods(runs: list[RunConfig]) -> None:
    """Build each (method, backbone, tasks) of the grid on the meta device (no memory, no weights read): a method
    that cannot take the grid's backbone or input size (TaskPrompter on a CNN, hps on a stride-32 map) is refused
    here in one line, not as a failed record per run. Errors other than a builder's own refusal (ValueError,
    ConfigError) are left to the run, where they are recorded with their traceback."""
    import dataclasses

    import torch

    from mtbench.engine import build_model

    seen = set()
    for cfg in runs:
        key = (cfg.method, cfg.backbone, cfg.tasks)
        builder = DATASETS.get(cfg.dataset)
        if key in seen or not hasattr(builder, "static_info"):
            continue
        seen.add(key)
        info = builder.static_info(cfg.tasks, cfg.dataset_cfg)
        try:
            with torch.device("meta"):
                build_model(dataclasses.replace(cfg, backbone_weights=None), info)
        except (ConfigError, ValueError) as e:
            raise ConfigError(f"method '{cfg.method}' cannot be built on backbone '{cfg.backbone}' for tasks "
                              f"{', '.join(cfg.tasks)}: {e}") from None
        except Exception:  # noqa: BLE001 - not a refusal: the run itself reports it
            continue


def check_split_sizes(cfg: RunConfig, cache_dir: Path) -> None:
    """A global batch larger than the training split cannot fill one iteration."""
    builder = DATASETS.get(cfg.dataset)
    split_size = getattr(builder, "split_size", None)
    if split_size is None:
        return
    n = split_size("train", cfg.data_cfg(cache_dir))
    batch = cfg.recipe["batch_size"]
    if n < batch:
        raise ConfigError(f"the {cfg.dataset} training split has {n} images, fewer than the global batch_size "
                          f"{batch}: --set batch_size={max(1, n)} or a larger split")


def check_data(cfg: RunConfig, cache_dir: Path, say: Callable[[str], None]) -> None:
    """The fast part of ``data check`` on a real dataset (remembered once clean); then the datasets are built,
    which renders the synthetic scenes once."""
    from mtbench.data import check
    from mtbench.engine import build_data

    if cfg.dataset in check.DATASETS:
        problems, notes = check.quick_check(cfg.dataset, cfg.data_cfg(cache_dir), cfg.tasks, cache_dir)
        for note in notes:
            say(f"note: {note}")
        if problems:
            shown = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10
                                                   else "")
            raise DataProblem(f"{cfg.dataset} data under {cfg.data_dir} cannot be trained on ({len(problems)} "
                              f"problem(s)):\n  {shown}\nFull report: python bench.py data check --dataset "
                              f"{cfg.dataset} --data-dir {cfg.data_dir}")
    build_data(cfg, cache_dir)


def check_grid(runs: list[RunConfig], devices: int, results_dir: Path, say: Callable[[str], None] = print) -> None:
    """Raise ConfigError / DataProblem / UnknownNameError (one line each) before anything trains."""
    first = runs[0]
    for cfg in runs:
        METHODS.get(cfg.method)
        BACKBONES.get(cfg.backbone)
        for t in cfg.tasks:
            TASKS.get(t)
    check_devices(devices, first.recipe["batch_size"])
    builder = DATASETS.get(first.dataset)
    info = builder.static_info(first.tasks, first.dataset_cfg) if hasattr(builder, "static_info") else None
    if info is not None:
        for cfg in {r.backbone: r for r in runs}.values():  # methods may fix their own backbone (segnet)
            check_backbone(cfg, info.image_size)
    check_methods(runs)
    cache_dir = Path(results_dir) / "cache"
    check_split_sizes(first, cache_dir)
    check_data(first, cache_dir, say)
