"""``python bench.py predict RUN_DIR --images DIR --out DIR``: a finished run's model on a folder of images."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished run: <results>/runs/<run_id> (record.json + checkpoints/final.pt)")
    p.add_argument("--images", required=True, help="folder of images (png, jpg, ...), any size")
    p.add_argument("--out", required=True,
                   help="output folder: <task>/<name>.png|.npy as the evaluators read them, pictures/<task>/<name>.png")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N (default: auto)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from mtbench.engine import pick_device
    from mtbench.predict import list_images, load_run, predict_folder
    from mtbench.train_log import stdout_is_terminal

    console = Console()
    images = list_images(Path(args.images))  # before the model is built: a wrong folder fails at once
    predictor = load_run(Path(args.run_dir), pick_device(args.device))
    console.print(f"predict: {predictor.cfg.run_id} ({predictor.cfg.method}, tasks {', '.join(predictor.tasks)}, "
                  f"input {predictor.size[0]}x{predictor.size[1]}) on {len(images)} image(s) from {args.images}",
                  markup=False, soft_wrap=True)
    with Progress(TextColumn("predict"), BarColumn(bar_width=20), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=console, transient=True,
                  disable=not stdout_is_terminal()) as progress:
        bar = progress.add_task("predict", total=len(images))
        counts = predict_folder(predictor, images, Path(args.out), lambda _: progress.advance(bar))
    console.print(f"wrote {sum(counts.values())} prediction(s) to {args.out} (one folder per task; pictures in "
                  f"{Path(args.out) / 'pictures'})", markup=False, soft_wrap=True)
    return 0
