"""CPU seconds per image of pyEdgeEval (haruishi43/py-edge-eval), the Python BSDS evaluator most
comparable to mtbench's, on boundary_speed.py's synthetic NYUD-size case; run it in its own venv:

    python3 -m venv /tmp/peevenv && /tmp/peevenv/bin/pip install numpy scipy scikit-image \\
        opencv-python-headless Cython pyEdgeEval==0.2.8
    /tmp/peevenv/bin/python benchmarks/pyedgeeval_speed.py [--repeats 2]

Its per-image entry point, ``evaluate_boundaries_threshold``, with maxDist 0.011, 101 thresholds
(``linspace(0, 1, 101)``; SEISM's HED list has 101 too), thinning, and once without NMS, once with
its own ``fast_nms`` (pyEdgeEval's defaults r=1, s=5, m=1.01). Its matching is BSDS' CSA with a
randomly seeded sparse outlier graph, so its counts move a little from run to run (printed) and
differ from mtbench's exact matching by design; this script measures time only.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from pyEdgeEval.common.binary_label import evaluate_boundaries_threshold

from synthetic_edges import synthetic_nyud


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2, help="runs per case; the best is reported (default 2)")
    args = ap.parse_args()
    pred, gt = synthetic_nyud()
    thresholds = np.linspace(0, 1, 101)
    for nms in (True, False):
        best, counts = float("inf"), []
        for _ in range(args.repeats):
            t0 = time.process_time()
            c = evaluate_boundaries_threshold(thresholds=thresholds, pred=pred / 255.0, gt=gt, max_dist=0.011,
                                              apply_thinning=True, apply_nms=nms,
                                              nms_kwargs=dict(r=1, s=5, m=1.01, half_prec=False))
            best = min(best, time.process_time() - t0)
            counts.append(np.stack(c))
        same = all(np.array_equal(counts[0], k) for k in counts)
        print(f"pyEdgeEval, synthetic NYUD 425x560, 101 thr, NMS {'on ' if nms else 'off'}: {best:6.2f} CPU s/image "
              f"(best of {args.repeats}; counts {'identical' if same else 'differ'} between runs)", flush=True)


if __name__ == "__main__":
    main()
