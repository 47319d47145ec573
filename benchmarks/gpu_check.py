"""The GPU path, measured: every registered method at its paper setting, in one command (< 8 min on one GPU).

Not a test (``tests/test_gpu_check.py`` runs it on the CPU at tiny sizes so it cannot rot). Three parts:

1. One table, a row per registered method at its paper setting (the recipe its release trains with: backbone,
   input size, per-GPU batch = the recipe's global batch / the GPUs of the released run; random init):
   train-step time, img/s and peak memory in fp32 and in bf16 autocast, the share of the step spent waiting for
   the data loader (the NYUD pipeline with its augmentation, on a fixture folder of native-size files, at the
   recipe's ``num_workers``), the loader's own img/s, evaluation img/s (forward + the evaluators' per-batch
   updates; the boundary matching that follows on the CPU is ``benchmarks/boundary_speed.py``'s), and the speed
   options (``perf.channels_last``, ``optimizer.fused``, ``perf.compile``, ``perf.tf32``) as the ratio of
   img/s with the option over without. Every step is the engine's own ``TrainStep``. For the first method the
   training log's cost is measured too: the same steps with and without ``TrainLog``.
2. A 100-step bf16 run of the first method on synthetic scenes at its paper resolution through the normal
   local executor (checkpoints, evaluation, trivial predictors, record); its training loss must fall.
3. The same run with ``--devices 2`` (NCCL, SyncBN) when two GPUs are visible.

    python benchmarks/gpu_check.py                              # GPU: paper settings, every method
    python benchmarks/gpu_check.py --tiny --device cpu          # CPU, tiny sizes (what the test runs)
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from mtbench import threads  # noqa: E402

threads.configure_environment()

import torch  # noqa: E402

# method -> (recipe of its released NYUD-v2 training, GPUs of that run). Per-GPU batch = global batch / GPUs.
PAPER = {
    "baseline": ("nyud", 1),  # the MQT/ATRC NYUD recipe's shared-encoder baseline
    "single": ("nyud", 1),
    "mqt": ("mqt_nyud", 8),  # configs/mqt_nyud.yaml: 8 GPUs x 1
    "mqt_spatial": ("mqt_nyud", 8),
    "invpt": ("invpt_nyud", 3),  # configs/invpt_nyud.yaml: 3 GPUs x 2
    "mtinet": ("mtinet_nyud", 1),  # configs/mtinet_nyud.yaml: batch 8 on one GPU
    "padnet": ("mtinet_nyud", 1),  # PAD-Net's release is MTI-Net's repository, same HRNet-18 set-up
    "demt": ("demt_nyud", 8),  # configs/demt_nyud.yaml: 8 GPUs x 1
    "atrc": ("atrc_nyud", 1),  # batch 8 "in total"; the GPU count is not in the released config
}
OPTIONS = ("channels_last", "fused", "compile", "tf32")
NYUD_TASKS = ("semseg", "depth", "normals", "edge")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setting(method: str, tiny: bool) -> dict[str, Any]:
    """Recipe, backbone, per-GPU batch and input size of ``method``'s paper setting (or the tiny CPU one)."""
    from mtbench.config import load_recipe
    from mtbench.registry import DATASETS, METHODS

    recipe_name, gpus = PAPER.get(method, ("nyud", 1))
    recipe = load_recipe(recipe_name)
    if tiny:  # every method on HRNet-18 at 64x64 with the smoke recipe's CPU-sized method options
        smoke = load_recipe("smoke")
        recipe["methods"] = smoke["methods"]
        recipe["backbone"], recipe["backbone_cfg"] = "hrnet_w18_small_v2", {}
        recipe["datasets"] = {"nyud": {"pad_size": [64, 64]}}
        recipe["num_workers"] = 0
        batch = 2
    else:
        batch = max(1, recipe["batch_size"] // gpus)
    tasks = ("semseg",) if getattr(METHODS.get(method), "single_task", False) else NYUD_TASKS
    info = DATASETS.get("nyud").static_info(tasks, dict(recipe["datasets"].get("nyud", {})))
    return {"recipe": recipe, "recipe_name": recipe_name, "batch": batch, "tasks": tasks, "info": info,
            "gpus": gpus}


def fixture_nyud(tmp: Path, shape: tuple[int, int], n_train: int) -> Path:
    """A NYUDv2 folder in the real file formats at ``shape`` (tests/fixtures_real), its train list repeated
    to ``n_train`` ids and its val list to ``n_train // 2``."""
    import fixtures_real

    root = fixtures_real.write_nyud(tmp, shape=shape)
    for split, ids in (("train", fixtures_real.NYUD_TRAIN), ("val", fixtures_real.NYUD_VAL)):
        n = n_train if split == "train" else max(2, n_train // 2)
        (root / "gt_sets" / f"{split}.txt").write_text("\n".join((list(ids) * n)[:n]) + "\n")
    return root


class Bench:
    """One method: its model, optimizer and a train loader that keeps running across measurements."""

    def __init__(self, method: str, s: dict[str, Any], data_root: Path, device: torch.device, steps: int,
                 warmup: int):
        from mtbench.config import RunConfig
        from mtbench.data.loader import eval_loader, train_loader
        from mtbench.engine import build_model
        from mtbench.registry import DATASETS

        self.method, self.s, self.device, self.steps, self.warmup = method, s, device, steps, warmup
        recipe = s["recipe"]
        ds_cfg = {**recipe["datasets"].get("nyud", {}), "data_dir": str(data_root)}
        self.train_ds = DATASETS.get("nyud")("train", s["tasks"], ds_cfg)
        self.val_ds = DATASETS.get("nyud")("val", s["tasks"], ds_cfg)
        self.info = self.train_ds.info
        cfg = RunConfig(method, "nyud", s["tasks"], recipe["backbone"], 0, recipe)
        torch.manual_seed(0)
        self.model, self.tasks, _ = build_model(cfg, self.info)
        self.model.to(device)
        self.weights = {t: task.weight(self.info) for t, task in self.tasks.items()}
        self.workers = recipe["num_workers"]
        pin = device.type == "cuda"
        self.loader = iter(train_loader(self.train_ds, s["batch"], 0, 0, 10**9, self.workers, pin))
        self.eval_loader = eval_loader(self.val_ds, s["batch"], self.workers, pin)

    def _step(self, recipe: dict[str, Any], amp: bool):
        from mtbench import perf
        from mtbench.engine import TrainStep
        from mtbench.optim import build_optimizer

        if self.device.type == "cuda":
            perf.configure_tf32(perf.options(recipe)["tf32"])
        self.model.to(memory_format=torch.channels_last if perf.options(recipe)["channels_last"]
                      else torch.contiguous_format)
        optimizer = build_optimizer(self.model, recipe["optimizer"])
        return TrainStep(self.model, self.model, optimizer, self.tasks, self.weights,
                         getattr(self.model, "aux_losses", None), self.device, amp and self.device.type == "cuda",
                         recipe)

    def train(self, recipe: dict[str, Any], amp: bool, log=None) -> dict[str, Any]:
        """Seconds per step, img/s, peak memory and data-wait share over ``steps`` steps after ``warmup``."""
        from mtbench.profiling import peak_memory_mb, reset_peak_memory

        self.model.train()
        step = self._step(recipe, amp)
        try:
            for _ in range(self.warmup):
                step(next(self.loader))
            _sync(self.device)
            reset_peak_memory(self.device)
            wait = 0.0
            t0 = t_end = time.perf_counter()
            for i in range(self.steps):
                batch = next(self.loader)
                t_data = time.perf_counter()
                wait += t_data - t_end
                losses = step(batch)
                if log is not None:
                    now = time.perf_counter()
                    log.step(i + 1, losses, 0.0, now - t_end, t_data - t_end)
                t_end = time.perf_counter()
            if log is not None:
                log.flush()
            _sync(self.device)
            dt = (time.perf_counter() - t0) / self.steps
        except torch.OutOfMemoryError:
            step.optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            return {"error": "out of memory"}
        finally:
            self.model.to(memory_format=torch.contiguous_format)
        return {"s_per_step": dt, "images_per_s": self.s["batch"] / dt, "data_wait": wait / (dt * self.steps),
                "peak_mb": peak_memory_mb(self.device)["mb"]}

    def evaluate(self, amp: bool, passes: int) -> dict[str, Any]:
        """img/s of the evaluation loop (forward + per-batch evaluator updates, no final compute)."""
        from mtbench.evaluation import accumulate, autocast

        self.model.eval()
        use_amp = amp and self.device.type == "cuda"

        def predict(images):
            with autocast(self.device, use_amp):
                return {t: v.float() for t, v in self.model(images)["final"].items()}

        with torch.inference_mode():
            if self.warmup:
                accumulate(predict, self.eval_loader, self.tasks, self.info, self.s["recipe"]["eval"], self.device)
            _sync(self.device)
            t0, n = time.perf_counter(), 0
            for _ in range(passes):
                accumulate(predict, self.eval_loader, self.tasks, self.info, self.s["recipe"]["eval"], self.device)
                n += len(self.val_ds)
            _sync(self.device)
        return {"images_per_s": n / (time.perf_counter() - t0)}

    def loader_rate(self, batches: int) -> float:
        t0 = time.perf_counter()
        for _ in range(batches):
            next(self.loader)
        return batches * self.s["batch"] / (time.perf_counter() - t0)


def with_option(recipe: dict[str, Any], option: str) -> dict[str, Any]:
    r = copy.deepcopy(recipe)
    if option == "fused":
        r["optimizer"]["fused"] = True
    else:
        r["perf"] = {**r.get("perf", {}), option: True}
    return r


def measure_method(method: str, args, device: torch.device, data_root: Path, started: float,
                   log_cost: bool) -> dict[str, Any]:
    s = setting(method, args.tiny)
    b = Bench(method, s, data_root, device, args.steps, args.warmup)
    recipe = s["recipe"]
    row: dict[str, Any] = {"method": method, "recipe": s["recipe_name"], "backbone": recipe["backbone"],
                           "input": list(s["info"].image_size), "batch": s["batch"], "workers": b.workers,
                           "params_m": sum(p.numel() for p in b.model.parameters()) / 1e6}
    cuda = device.type == "cuda"
    row["fp32"] = b.train(recipe, amp=False)
    row["bf16"] = b.train(recipe, amp=True) if cuda else {"error": "CUDA only"}  # the engine's autocast rule
    row["eval"] = b.evaluate(amp=True, passes=2 if cuda else 1)
    row["loader_images_per_s"] = b.loader_rate(max(2, args.steps // 2))
    row["options"] = {}
    measured = [o for o in OPTIONS if o in args.options] if args.options_for == "all" or log_cost else []
    for option in measured:
        if option == "tf32" and not cuda:
            row["options"][option] = {"skipped": "CUDA only"}
            continue
        if time.perf_counter() - started > args.budget_s:
            row["options"][option] = {"skipped": "time budget"}
            continue
        amp = cuda and option != "tf32"  # TF32 changes fp32 matmuls only; bf16 autocast does not use them
        base = row["bf16" if amp else "fp32"]
        r = b.train(with_option(recipe, option), amp=amp)
        if "error" in r or "error" in base:
            row["options"][option] = {"error": r.get("error") or base.get("error")}
        else:
            row["options"][option] = {**r, "speedup": r["images_per_s"] / base["images_per_s"]}
    if log_cost:
        row["log_cost"] = measure_log_cost(b, recipe)
    del b
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def measure_log_cost(b: Bench, recipe: dict[str, Any]) -> dict[str, float]:
    """The same bf16 steps without and with the engine's TrainLog (A, B, A, B: drifts cancel)."""
    import io

    from mtbench.train_log import TrainLog

    rates = {"without": [], "with": []}
    amp = b.device.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(2 if amp else 1):
            rates["without"].append(b.train(recipe, amp=amp)["s_per_step"])
            log = TrainLog(Path(tmp), "gpu_check", 10**9, 0, b.s["batch"], plain=False, out=io.StringIO())
            rates["with"].append(b.train(recipe, amp=amp, log=log)["s_per_step"])
    without, with_log = (sum(v) / len(v) for v in (rates["without"], rates["with"]))
    return {"s_per_step_without": without, "s_per_step_with": with_log, "overhead": with_log / without - 1}


def fall_run(method: str, args, device_name: str, results: Path, devices: int) -> dict[str, Any]:
    """``iterations`` bf16 steps on synthetic scenes at the paper resolution through the local executor; the mean
    loss of the last tenth of the steps against the first tenth."""
    from mtbench.config import RunConfig, load_recipe
    from mtbench.launch import run_local
    from mtbench.records import RECORD_NAME, runs_dir
    from mtbench.train_log import LOG_NAME, read_log

    s = setting(method, args.tiny)
    recipe = copy.deepcopy(load_recipe("smoke") if args.tiny else s["recipe"])
    h, w = s["info"].image_size
    recipe.update(iterations=args.fall_steps, amp=True, eval_every=0, checkpoint_every=max(1, args.fall_steps // 2),
                  batch_size=s["batch"] * devices, sync_bn=devices > 1 and recipe["sync_bn"])
    if args.tiny:
        recipe["backbone"], recipe["num_workers"] = "hrnet_w18_small_v2", 0
    recipe["eval"] = {**recipe["eval"], "edge_thresholds": 21}  # the CPU's boundary matching is not measured here
    n_train = max(8, 2 * s["batch"] * devices)
    recipe["datasets"] = {"synthetic": {"n_train": n_train, "n_val": 2 * devices, "height": h, "width": w,
                                        "seed": 0}}
    cfg = RunConfig(method, "synthetic", s["tasks"], recipe["backbone"], 0, recipe)
    t0 = time.perf_counter()
    outcome = run_local([cfg], results, device_name, force=True, devices=devices, max_retries=0)
    run_dir = runs_dir(results) / cfg.run_id
    losses = [row["loss"] for row in read_log(run_dir / LOG_NAME)]
    k = max(1, len(losses) // 10)
    first, last = (sum(losses[:k]) / k, sum(losses[-k:]) / k) if losses else (math.nan, math.nan)
    record = json.loads((run_dir / RECORD_NAME).read_text()) if (run_dir / RECORD_NAME).is_file() else {}
    return {"method": method, "devices": devices, "outcome": outcome.get(cfg.run_id), "steps": len(losses),
            "input": [h, w], "global_batch": recipe["batch_size"], "loss_first": first, "loss_last": last,
            "loss_fell": bool(last < first), "wall_s": time.perf_counter() - t0,
            "train_images_per_s": record.get("train_images_per_s"), "precision": record.get("precision"),
            "peak_memory": record.get("peak_memory"), "data_wait": (record.get("training") or {}).get(
                "data_wait_fraction")}


def _f(v: float | None, spec: str, scale: float = 1.0) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v * scale, spec)


def table(rows: list[dict[str, Any]], device_label: str) -> str:
    head = ["method", "recipe", "backbone", "input", "batch/GPU", "fp32 s/step", "fp32 img/s", "fp32 peak GB",
            "bf16 s/step", "bf16 img/s", "bf16 peak GB", "data wait", "loader img/s (workers)", "eval img/s",
            *[f"{o} ×" for o in OPTIONS]]
    lines = [f"GPU check on {device_label}", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], r["recipe"], r["backbone"], "×".join(map(str, r["input"])), str(r["batch"])]
        for prec in ("fp32", "bf16"):
            m = r[prec]
            if "error" in m:
                cells += [m["error"], "—", "—"]
            else:
                cells += [_f(m["s_per_step"], ".3f"), _f(m["images_per_s"], ".1f"), _f(m["peak_mb"], ".2f", 1 / 1024)]
        bf = r["bf16"] if "error" not in r["bf16"] else r["fp32"]
        cells += [_f(bf.get("data_wait"), ".0%", 1), f"{r['loader_images_per_s']:.1f} ({r['workers']})",
                  _f(r["eval"]["images_per_s"], ".1f")]
        for o in OPTIONS:
            m = r["options"].get(o)
            cells.append("not run" if m is None else m.get("error") or m.get("skipped") or f"{m['speedup']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os

    parsed = argv if argv is not None else sys.argv[1:]
    n = next((int(parsed[i + 1]) for i, a in enumerate(parsed[:-1]) if a == "--threads"), None)
    if n is None:
        return check(argv)
    saved = (os.environ.get(threads.BUDGET_VAR), torch.get_num_threads())
    os.environ[threads.BUDGET_VAR] = str(n)  # the CPU budget every run of this process takes (engine.run)
    torch.set_num_threads(n)
    try:
        return check(argv)
    finally:
        if saved[0] is None:
            os.environ.pop(threads.BUDGET_VAR, None)
        else:
            os.environ[threads.BUDGET_VAR] = saved[0]
        torch.set_num_threads(saved[1])


def check(argv: list[str] | None = None) -> int:
    from mtbench.engine import pick_device
    from mtbench.registry import METHODS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    p.add_argument("--methods", default="all", help="comma list of methods (default: every registered method)")
    p.add_argument("--tiny", action="store_true", help="HRNet-18 at 64x64, batch 2, for a CPU (the test)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before each measurement (default 3)")
    p.add_argument("--options", default=",".join(OPTIONS),
                   help=f"speed options measured with and without (default: {','.join(OPTIONS)}; '' for none)")
    p.add_argument("--options-for", choices=("all", "first"), default="all",
                   help="measure the speed options for every method (default) or the first only")
    p.add_argument("--fall-steps", type=int, default=100, help="steps of the loss-must-fall run (default 100)")
    p.add_argument("--fall-method", default=None, help="method of the loss-must-fall run (default: the first)")
    p.add_argument("--devices", type=int, default=None,
                   help="processes of the data-parallel run (default: 2 when two GPUs are visible, else none)")
    p.add_argument("--budget-s", type=float, default=300.0,
                   help="after this many seconds the remaining option measurements are skipped (default 300)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of this process and its runs (default: the CPU budget; tiny sizes run best on 1)")
    p.add_argument("--out", default="results/gpu_check", help="folder of the JSON result and the runs")
    args = p.parse_args(argv)
    args.options = [o for o in args.options.split(",") if o]
    bad = [o for o in args.options if o not in OPTIONS]
    if bad:
        p.error(f"unknown option(s) {bad}; known: {', '.join(OPTIONS)}")
    methods = METHODS.names() if args.methods == "all" else [m for m in args.methods.split(",") if m]
    methods.sort(key=lambda m: m != "baseline")  # the baseline first: the log cost and the runs use the first
    for m in methods:
        METHODS.get(m)
    device = pick_device(args.device)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    started = time.perf_counter()
    out = Path(args.out)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        shape = (48, 64) if args.tiny else (425, 560)  # NYUD's native size; every paper pad_size holds it
        root = fixture_nyud(Path(tmp), shape, n_train=max(16, 2 * (args.steps + args.warmup)) if not args.tiny
                            else 8)
        for i, m in enumerate(methods):
            print(f"[{time.perf_counter() - started:5.0f} s] {m} ...", flush=True)
            rows.append(measure_method(m, args, device, root, started, log_cost=i == 0))
    print(table(rows, f"{label} (python benchmarks/gpu_check.py{' --tiny' if args.tiny else ''}"
                      f"{' --device ' + args.device if args.device != 'auto' else ''})"))
    first = rows[0]
    if "log_cost" in first:
        lc = first["log_cost"]
        print(f"training log ({first['method']}, {'bf16' if device.type == 'cuda' else 'fp32'}): {lc['s_per_step_without']:.4f} s/step without, "
              f"{lc['s_per_step_with']:.4f} with: {lc['overhead']:+.1%}")
    fall = [fall_run(args.fall_method or methods[0], args, args.device, out / "runs", 1)]
    devices = args.devices if args.devices is not None else (2 if torch.cuda.device_count() >= 2 else 1)
    if devices > 1:
        fall.append(fall_run(args.fall_method or methods[0], args, args.device, out / "runs", devices))
    else:
        print("--devices 2: not run (fewer than two GPUs visible)")
    ok = True
    for f in fall:
        ok &= f["loss_fell"] and f["outcome"] == "done"
        print(f"{f['steps']}-step {f['precision']} run of {f['method']} on {f['devices']} device(s), synthetic "
              f"{f['input'][0]}×{f['input'][1]}, global batch {f['global_batch']}: {f['outcome']}; loss "
              f"{f['loss_first']:.4f} (first tenth) → {f['loss_last']:.4f} (last tenth): "
              f"{'falls' if f['loss_fell'] else 'DOES NOT FALL'}; {_f(f['train_images_per_s'], '.1f')} img/s")
    from mtbench.atomic import atomic_write_text

    result = {"device": label, "tiny": args.tiny, "methods": rows, "fall_runs": fall,
              "wall_s": time.perf_counter() - started, "torch": torch.__version__}
    path = out / f"gpu_check_{'tiny_' if args.tiny else ''}{device.type}.json"
    atomic_write_text(path, json.dumps(result, indent=2, default=str) + "\n")
    print(f"{time.perf_counter() - started:.0f} s in all; results in {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
