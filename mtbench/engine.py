"""Train one run, evaluate it, and return its record. Knows no method, task or dataset by name."""
from __future__ import annotations

import random
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from mtbench import allocator, checkpoint, perf, qualitative, threads
from mtbench import trivial as trivial_scores
from mtbench.config import RunConfig
from mtbench.data.loader import eval_loader, train_loader
from mtbench.distributed import all_reduce_sum, barrier, context, device_names, per_device_batch, prepare_model
from mtbench.evaluation import autocast, evaluate, evaluate_trivial, fit_priors, subset_ids
from mtbench.objective import task_losses
from mtbench.optim import build_optimizer, build_scheduler
from mtbench.profiling import count_flops, environment, param_counts, peak_memory_mb, reset_peak_memory
from mtbench.registry import BACKBONES, DATASETS, METHODS, TASKS
from mtbench.train_log import NonFiniteLoss, TrainLog, stdout_is_terminal  # noqa: F401 (NonFiniteLoss: API)
from mtbench.weighting import Combiner, resolved_loss_weights


def make_progress(disable: bool = False) -> Progress:
    """Bars that fit an 80-column terminal: short labels, a fixed-width bar, count, status, time left."""
    return Progress(TextColumn("[bold]{task.description}", markup=False), BarColumn(bar_width=20),
                    TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[status]}", markup=False),
                    TimeRemainingColumn(), disable=disable or not stdout_is_terminal(), transient=True)


def short_name(cfg: RunConfig) -> str:
    """A progress label: method, the task of a single-task run, seed (the run id is too long for a bar)."""
    task = f" {cfg.tasks[0]}" if len(cfg.tasks) == 1 else ""
    return f"{cfg.method}{task} s{cfg.seed}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def build_data(cfg: RunConfig, cache_dir: Path):
    ds_cfg = cfg.data_cfg(cache_dir)
    builder = DATASETS.get(cfg.dataset)
    train, val = builder("train", cfg.tasks, ds_cfg), builder("val", cfg.tasks, ds_cfg)
    return train, val


def build_model(cfg: RunConfig, info) -> tuple[torch.nn.Module, dict[str, Any], torch.nn.Module]:
    tasks = {t: TASKS.get(t) for t in cfg.tasks}
    backbone = BACKBONES.get(cfg.backbone)(img_size=tuple(info.image_size), checkpoint=cfg.backbone_weights,
                                           **cfg.recipe["backbone_cfg"])
    builder = METHODS.get(cfg.method)
    model = builder({t: task.out_channels(info) for t, task in tasks.items()}, backbone, cfg.method_cfg)
    return model, tasks, backbone


def run(
    cfg: RunConfig,
    run_dir: Path,
    device: torch.device | None = None,
    progress: Progress | None = None,
    on_iteration: Callable[[int, Callable[[], None]], None] | None = None,
) -> dict[str, Any]:
    """Train (resuming from ``run_dir/checkpoints`` if present), evaluate, return the record.

    ``on_iteration(it, save_checkpoint)`` is called after every optimizer step; preemption
    handlers use it to checkpoint and stop, tests use it to simulate a crash.
    """
    from mtbench.backbones import describe

    device = device or pick_device()
    run_dir = Path(run_dir)
    recipe = cfg.recipe
    ctx = context()
    local_batch = per_device_batch(recipe["batch_size"], ctx.world_size)
    started = datetime.now(timezone.utc).isoformat()
    thread_plan = threads.apply(recipe["num_workers"])
    allocator.keep_freed_memory()
    if device.type == "cuda":
        perf.configure_tf32(perf.options(recipe)["tf32"])
    seed_everything(cfg.seed)
    train_ds, val_ds = build_data(cfg, run_dir.parent.parent / "cache")
    info = train_ds.info
    model, tasks, backbone = build_model(cfg, info)
    model.to(device)
    perf.prepare_model(model, recipe)
    # A model that runs modules without using their output (parity flags) says so itself.
    find_unused = bool(getattr(model, "find_unused_parameters", False))
    net = prepare_model(model, device, bool(recipe["sync_bn"]), find_unused)
    model = net.module if net is not model else model  # SyncBN conversion may replace submodules
    optimizer = build_optimizer(model, recipe["optimizer"])
    weights = resolved_loss_weights(recipe, cfg.tasks, info.loss_weight_profile)
    shared_rep = getattr(model, "backbone", backbone)  # where ``rep: true`` aggregates: the backbone's output
    combiner = Combiner(cfg.weighting, cfg.weighting_cfg, list(cfg.tasks), model, shared_rep,
                        {"n_train": len(train_ds), "batch_size": recipe["batch_size"]})
    combiner.strategy.to(device)
    if combiner.strategy.parameters():  # learned task weights train with the model (no weight decay)
        optimizer.add_param_group({"params": combiner.strategy.parameters(), "weight_decay": 0.0})
    total = recipe["iterations"]
    scheduler = build_scheduler(optimizer, recipe["schedule"], total)
    ckpt_dir = run_dir / "checkpoints"
    resume = checkpoint.load_latest(ckpt_dir, model, optimizer, scheduler, device, is_main=ctx.is_main)
    start, history = resume.iteration, resume.extra.get("history", [])
    combiner.load_state_dict(resume.extra.get("weighting"))
    aux_losses = getattr(model, "aux_losses", None)  # deep supervision that is not the task's own output
    use_amp = bool(recipe["amp"]) and device.type == "cuda"
    pin = device.type == "cuda"
    step = TrainStep(net, model, optimizer, tasks, weights, aux_losses, device, use_amp, recipe, combiner)
    reset_peak_memory(device)

    def save(it: int) -> None:
        log.flush()  # raises on a non-finite loss, and checkpoint.save on non-finite weights: never checkpointed
        checkpoint.save(ckpt_dir, model, optimizer, scheduler, it,
                        {"history": history, "weighting": combiner.state_dict()}, write=ctx.is_main)
        barrier()  # one writer; every rank resumes from the same file

    own_progress = progress is None
    progress = progress or make_progress(disable=not ctx.is_main)
    live = progress if own_progress else nullcontext()
    log = TrainLog(run_dir, short_name(cfg), total, start, recipe["batch_size"], is_main=ctx.is_main,
                   reduce=all_reduce_sum, world_size=ctx.world_size)
    resume.report(log.say)  # a corrupt checkpoint moved aside, and where training restarts instead
    primary = {t: task.primary_metric for t, task in tasks.items()}
    t0 = time.perf_counter()
    with live:
        bar = progress.add_task(short_name(cfg), total=total, completed=start, status="")
        net.train()
        loader = train_loader(train_ds, recipe["batch_size"], cfg.seed, start, total, recipe["num_workers"], pin,
                              ctx.rank, ctx.world_size)
        t_end = time.perf_counter()
        for it, batch in enumerate(loader, start=start):
            t_data = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            losses = step(batch)
            task_weights = step.task_weights
            scheduler.step()
            done = it + 1
            combiner.after_step(done, step.losses_again)
            now = time.perf_counter()
            log.step(done, losses, lr, now - t_end, t_data - t_end,
                     None if task_weights is None else {"task_weights": task_weights})
            if log.last_loss is not None and done % log.sync_every == 0:
                progress.update(bar, completed=done, status=f"loss {log.last_loss:.4f}")
            if recipe["eval_every"] and done % recipe["eval_every"] == 0 and done < total:
                metrics = _evaluate(model, val_ds, tasks, info, recipe, device, use_amp, pin, progress)
                history.append({"iteration": done, "metrics": metrics})
                log.evaluation(done, metrics, primary)
                net.train()
            if done % recipe["checkpoint_every"] == 0 or done == total:  # the end of training is always saved
                save(done)
            if on_iteration:
                on_iteration(done, lambda d=done: save(d))
            t_end = time.perf_counter()
        log.flush()
        progress.update(bar, completed=total)
        progress.remove_task(bar)  # the launcher prints one summary line per finished run
        train_time = time.perf_counter() - t0
        t1 = time.perf_counter()
        metrics = _evaluate(model, val_ds, tasks, info, recipe, device, use_amp, pin, progress,
                            pred_dir=run_dir / "predictions",
                            qualitative=(run_dir / qualitative.DIR_NAME, qualitative.fixed_ids(val_ds)))
        eval_time = time.perf_counter() - t1
        log.evaluation(total, metrics, primary)
        shard = {"rank": ctx.rank, "world_size": ctx.world_size}

        def score_trivial(names: list[str]) -> dict[str, dict[str, float]]:
            some = {t: tasks[t] for t in names}
            priors = fit_priors(eval_loader(train_ds, local_batch, recipe["num_workers"], False, **shard), some,
                                info)
            return evaluate_trivial(priors, eval_loader(val_ds, local_batch, recipe["num_workers"], False, **shard),
                                    some, info, recipe["eval"], torch.device("cpu"), subset_ids(val_ds, some))

        keys = {t: trivial_scores.cache_key(cfg.dataset, t, info, cfg.dataset_cfg, recipe["eval"], cfg.data_dir)
                for t in tasks}
        trivial = trivial_scores.cached_scores(run_dir.parent.parent / "cache", keys, score_trivial)
    checkpoint.save_final(ckpt_dir, model, total, write=ctx.is_main)  # what a finished run keeps
    return {
        "run_id": cfg.run_id,
        "status": "done",
        "config": cfg.to_dict(),
        "method": cfg.method, "dataset": cfg.dataset, "tasks": list(cfg.tasks), "backbone": cfg.backbone,
        "seed": cfg.seed, "recipe_name": recipe["name"], "setting_key": cfg.setting_key,
        "single_task_reference": bool(getattr(METHODS.get(cfg.method), "single_task", False)),
        "method_notes": list(getattr(model, "record_notes", [])),  # what the model says it computes
        "loss_weights": weights,  # each task's loss weight (the recipe's, else the paper's)
        "weighting": combiner.describe(),
        "metrics": metrics,
        "primary_metrics": primary,
        # the setting's Δm convention (leaderboard.py): primary metrics, or every metric the tasks list
        "delta_m": {"convention": getattr(info, "delta_m", "primary"),
                    "metrics": {t: list(getattr(task, "delta_metrics", (task.primary_metric,)))
                                for t, task in tasks.items()}},
        "higher_is_better": {t: {m: task.higher_is_better(m) for m in metrics[t] if m != "loss" and "/" not in m}
                             for t, task in tasks.items()},
        "trivial": trivial,
        "history": history,
        "training": log.summary(),
        "iterations": total, "resumed_from": start, "resume_notes": resume.notes,
        "params": param_counts(model),
        "backbone_info": describe(backbone),
        "flops": count_flops(model, tuple(info.image_size), device) if ctx.is_main else None,
        "distributed": {"world_size": ctx.world_size, "global_batch": recipe["batch_size"],
                        "per_device_batch": local_batch, "sync_bn": bool(recipe["sync_bn"]) and ctx.enabled,
                        "find_unused_parameters": find_unused, "device_names": device_names(device)},
        "dataset_info": {"name": info.name, "image_size": list(info.image_size), "num_classes": info.num_classes,
                         "edge_max_dist": info.edge_max_dist, "n_train": len(train_ds), "n_val": len(val_ds),
                         "eval_subsets": {t: sorted(ids) for t, ids in subset_ids(val_ds, tasks).items()}},
        "train_time_s": train_time, "eval_time_s": eval_time,
        # images per second over the iterations this process trained (a resumed run counts its last part)
        "train_images_per_s": (total - start) * recipe["batch_size"] / train_time if train_time > 0 else None,
        "peak_memory": peak_memory_mb(device),
        "precision": "bf16-autocast" if use_amp else "fp32",
        "perf": perf.describe(recipe),
        "threads": thread_plan,
        "environment": environment(device),
        "started_at": started, "finished_at": datetime.now(timezone.utc).isoformat(),
    }


class TrainStep:
    """One optimizer step on one batch: inputs to the device, forward under autocast, the task losses, the
    weighting strategy's backward (``combiner``; none: the plain sum), gradient clipping, update. The engine's loop
    and ``benchmarks/gpu_check.py`` call this same code."""

    def __init__(self, net, model, optimizer, tasks, weights, aux_losses, device, use_amp, recipe, combiner=None):
        self.net, self.model, self.optimizer, self.tasks, self.weights = net, model, optimizer, tasks, weights
        self.aux_losses, self.device, self.use_amp, self.recipe = aux_losses, device, use_amp, recipe
        self.combiner = combiner
        self.forward = perf.training_forward(net, recipe)
        self.clip = float(recipe["grad_clip"]) if recipe.get("grad_clip") else None
        self.task_weights: dict[str, float] | None = None  # what the strategy applied at the last step
        self._batch: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None

    def __call__(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The weighted per-task losses, on the device (no host sync)."""
        images = perf.prepare_input(batch["image"].to(self.device, non_blocking=True), self.recipe)
        targets = {t: batch[t].to(self.device, non_blocking=True) for t in self.tasks}  # once, for every level
        hooks = self.combiner.forward_context(self.net) if self.combiner else nullcontext()
        with hooks, autocast(self.device, self.use_amp):
            out = self.forward(images)
        losses = task_losses(out, targets, self.tasks, self.weights, self.aux_losses)
        self.optimizer.zero_grad(set_to_none=True)
        if self.combiner is None:
            sum(losses.values()).backward()
        else:  # "fixed": sum(losses.values()).backward(), as always
            self.task_weights = self.combiner.backward(losses)
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self._batch = (images, targets)
        return losses

    def losses_again(self) -> dict[str, torch.Tensor]:
        """The last step's batch through the updated model: what FAMO compares the losses before with."""
        images, targets = self._batch
        with autocast(self.device, self.use_amp):
            out = self.net(images)
        return task_losses(out, targets, self.tasks, self.weights, self.aux_losses)


def _evaluate(model, val_ds, tasks, info, recipe, device, use_amp, pin, progress, pred_dir=None, qualitative=None):
    model.eval()
    ctx = context()
    loader = eval_loader(val_ds, per_device_batch(recipe["batch_size"], ctx.world_size), recipe["num_workers"], pin,
                         ctx.rank, ctx.world_size)
    bar = progress.add_task("evaluate", total=len(loader), status="")

    def predict(images):
        with torch.inference_mode(), autocast(device, use_amp):
            return {t: v.float() for t, v in model(perf.prepare_input(images, recipe))["final"].items()}

    with torch.inference_mode():
        result = evaluate(predict, loader, tasks, info, recipe["eval"], device, pred_dir=pred_dir,
                          qualitative=qualitative,
                          on_batch=lambda: progress.advance(bar), eval_ids=subset_ids(val_ds, tasks))
    progress.remove_task(bar)
    return result
