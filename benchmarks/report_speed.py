"""How long `bench.py report` takes on a large results directory: N fake-but-valid run records (tests/fake_runs.py:
records, 200-iteration training logs with eval history, 4 qualitative images of 4 tasks at 96×128) in a temp dir.

    python benchmarks/report_speed.py              # 200 records: 5 settings × (8 methods × 4 seeds + 4 tasks × 2 refs)
    python benchmarks/report_speed.py --workers 1  # in one process

Prints the build time and the figure count; the target is < 30 s for 200 records on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fake_runs import write_results  # noqa: E402

METHODS = ("baseline", "mqt", "invpt", "mtinet", "padnet", "atrc", "demt", "taskprompter")
TASKS = ("semseg", "depth", "normals", "edge")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir and print its path")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mtbench_report_speed_"))
    t0 = time.perf_counter()
    n = 0
    for k in range(args.settings):
        n += len(write_results(root, methods=METHODS, seeds=tuple(range(args.seeds)), ref_seeds=(0, 1), tasks=TASKS,
                               key=f"setting{k}", iterations=200, history_every=50, size=(96, 128),
                               qual_ids=tuple(f"val_{i:05d}" for i in range(4))))
    print(f"{n} records written to {root} in {time.perf_counter() - t0:.1f} s")
    from mtbench.report.build import build_report

    import resource

    def cpu() -> float:  # this process and its (finished) figure workers
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    build_report(root, workers=args.workers)
    print(f"report of {n} records: {time.perf_counter() - t0:.1f} s wall, {cpu() - c0:.1f} s CPU (workers: "
          f"{args.workers or 'default'}; load average now {os.getloadavg()[0]:.1f})")
    if not args.keep:
        import shutil

        shutil.rmtree(root)


if __name__ == "__main__":
    main()
