"""Images/s of the training DataLoader for nyud / pascal (real-size fixture folders) and synthetic.

Not a test: it answers "how many loader workers keep a GPU fed?". The real datasets are written
as fixture folders at their native sizes (NYUD 425x560, PASCAL up to 500x500) in the real file
formats, so decoding, augmentation and padding cost what they cost on the real data (minus disk
reads, which the page cache hides here). Each configuration runs two passes of ``--batches``
batches through the same sampler / collate the engine uses; the second pass shows what
``persistent_workers`` saves (no worker start-up).

    python benchmarks/loader_speed.py --workers 0,2,4 --batch-size 8 --batches 10
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import fixtures_real  # noqa: E402

from mtbench.data.loader import IterationBatchSampler, collate  # noqa: E402
from mtbench.registry import DATASETS  # noqa: E402


def datasets(tmp: Path, which: list[str]) -> dict:
    out = {}
    if "nyud" in which:
        root = fixtures_real.write_nyud(tmp, shape=(425, 560))
        out["nyud (train, 448x576)"] = DATASETS.get("nyud")("train", ("semseg", "depth", "normals", "edge"),
                                                            {"data_dir": str(root)})
    if "pascal" in which:
        root = fixtures_real.write_pascal(tmp, shapes=((375, 500), (500, 375), (333, 500)))
        out["pascal (train, 512x512)"] = DATASETS.get("pascal")("train", ("semseg", "human_parts", "sal", "normals",
                                                                          "edge"), {"data_dir": str(root)})
    if "synthetic" in which:
        cfg = {"n_train": 16, "n_val": 2, "height": 240, "width": 320, "cache_dir": str(tmp / "cache")}
        out["synthetic (train, 240x320)"] = DATASETS.get("synthetic")("train", ("semseg", "depth", "normals", "edge"), cfg)
    return out


def measure(ds, batch_size: int, batches: int, workers: int, pin: bool, persistent: bool
            ) -> tuple[float, float, float | None]:
    """(images/s of the first pass, images/s of the second pass, CPU ms per image of the second pass when the
    main process loads (workers 0): what one worker process costs per image, whatever else runs on the box)."""
    sampler = IterationBatchSampler(len(ds), min(batch_size, len(ds)), seed=0, start=0, total=batches)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers, collate_fn=collate, pin_memory=pin,
                        persistent_workers=persistent and workers > 0, prefetch_factor=4 if workers else None)
    rates = []
    for _ in range(2):
        start, cpu, n = time.perf_counter(), time.process_time(), 0
        for batch in loader:
            n += batch["image"].shape[0]
        rates.append(n / (time.perf_counter() - start))
        cpu_ms = 1000 * (time.process_time() - cpu) / n
    return rates[0], rates[1], (cpu_ms if workers == 0 else None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="nyud,pascal,synthetic")
    p.add_argument("--workers", default="0,2", help="comma list of num_workers values")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads in the main process (a worker has 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pin_options = [False, True] if torch.cuda.is_available() else [False]
    table = Table(title=f"DataLoader images/s (batch {args.batch_size}, {args.batches} batches per pass)")
    for col in ("dataset", "workers", "pin_memory", "persistent", "pass 1", "pass 2", "CPU ms/img"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        for name, ds in datasets(Path(tmp), args.datasets.split(",")).items():
            for workers in (int(w) for w in args.workers.split(",")):
                for pin in pin_options:
                    for persistent in ([False, True] if workers else [False]):
                        r1, r2, cpu = measure(ds, args.batch_size, args.batches, workers, pin, persistent)
                        table.add_row(name, str(workers), str(pin), str(persistent), f"{r1:.1f}", f"{r2:.1f}",
                                      "—" if cpu is None else f"{cpu:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
