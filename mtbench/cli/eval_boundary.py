"""``bench.py eval-boundary``: score a folder of soft edge maps against boundary ground truth.

This is how a published or exported set of predictions is checked against the papers' numbers
without MATLAB. The edge protocol says which released evaluation is reproduced (SEISM's, as
InvPT/MQTransformer used, by default for nyud/pascal; the BSDS and SBD benchmarks' for bsds/sbd);
``--thresholds``, ``--nms`` and ``--max-dist`` override single details.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from mtbench.metrics.boundary import MAX_DIST, BoundaryResult, evaluate_boundaries, protocol_thresholds, resolve_thresholds
from mtbench.metrics.boundary_io import (GT_SUFFIXES, PRED_SUFFIXES, BoundaryInputError, load_ground_truth,
                                         load_prediction)
from mtbench.metrics.boundary_protocol import PROTOCOLS, get_protocol

DATASET_PROTOCOL = {"bsds": "bsds", "sbd": "sbd", "nyud": "seism", "pascal": "seism"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    protocols = "; ".join(f"{p.name}: {p.reproduces}" for p in PROTOCOLS.values())
    parser.add_argument("--pred", type=Path, required=True,
                        help="folder of <id>.png/.bmp (8-bit, prob = value/255), <id>.npy or <id>.mat (2-D, [0, 1] or uint8)")
    parser.add_argument("--gt", type=Path, required=True,
                        help="folder of <id>.mat (BSDS groundTruth, SBD GTcls/GTinst, PASCAL-Context LabelMap) "
                             "or <id>.png/.npy edge maps (NYUD)")
    parser.add_argument("--dataset", required=True, choices=sorted(MAX_DIST),
                        help="sets the default maxDist (bsds/pascal 0.0075, nyud 0.011, sbd 0.02) and protocol")
    parser.add_argument("--edge-protocol", choices=sorted(PROTOCOLS), default=None,
                        help=f"which released evaluation to reproduce (default: bsds for bsds, sbd for sbd, seism "
                             f"otherwise) -- {protocols}")
    parser.add_argument("--class", dest="category", type=int, default=None,
                        help="SBD class index 1..20 (GTcls/GTinst ground truth), e.g. 15 = person")
    parser.add_argument("--max-dist", type=float, default=None,
                        help="match tolerance as a fraction of the image diagonal (default: the dataset's)")
    parser.add_argument("--kill-internal", action=argparse.BooleanOptionalAction, default=None,
                        help="drop predicted pixels inside the class segment and farther than maxDist from its "
                             "boundary, as SEISM and the SBD benchmark do (default: on for SBD ground truth)")
    parser.add_argument("--thresholds", type=int, default=None,
                        help="N uniform BSDS thresholds instead of the protocol's (seism: SEISM's 101 HED thresholds, "
                             "mtinet: 0.01..0.99, bsds/sbd: 99)")
    parser.add_argument("--nms", action=argparse.BooleanOptionalAction, default=None,
                        help="structured-edge NMS before thresholding (default: the protocol's, on for seism only)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default min(cpus, 8))")
    parser.add_argument("--ids", type=Path, default=None, help="file with one image id per line (default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the full result as JSON ('metrics' in %%; ods_f, R, P, ... as fractions)")


def _ids_in(folder: Path, suffixes: tuple[str, ...]) -> set[str]:
    if not folder.is_dir():
        raise BoundaryInputError(f"not a folder: {folder}")
    return {p.stem for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file()}


def _name_some(ids: set[str] | list[str], limit: int = 10) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def resolve_ids(pred_dir: Path, gt_dir: Path, ids_file: Path | None) -> list[str]:
    """The ids to score; every one needs a prediction and a GT file, and without ``--ids`` the
    two folders must hold the same ids (a stray or missing file usually means a wrong folder)."""
    preds = _ids_in(pred_dir, PRED_SUFFIXES)
    gts = _ids_in(gt_dir, GT_SUFFIXES)
    if ids_file is not None:
        wanted = [s.strip() for s in ids_file.read_text().splitlines() if s.strip()]
        if len(set(wanted)) != len(wanted):
            raise BoundaryInputError(f"{ids_file} lists an id twice")
    else:
        extra = preds - gts
        if extra:
            raise BoundaryInputError(f"{len(extra)} prediction(s) without ground truth in {gt_dir}: {_name_some(extra)}")
        wanted = sorted(preds | gts)
    missing_pred = [i for i in wanted if i not in preds]
    missing_gt = [i for i in wanted if i not in gts]
    if missing_pred:
        raise BoundaryInputError(f"{len(missing_pred)} prediction(s) missing in {pred_dir}: {_name_some(missing_pred)}")
    if missing_gt:
        raise BoundaryInputError(f"{len(missing_gt)} ground truth file(s) missing in {gt_dir}: {_name_some(missing_gt)}")
    if not wanted:
        raise BoundaryInputError(f"no images found in {pred_dir}")
    return wanted


class _Inputs:
    """Predictions, annotator maps and kill_internal segments, read lazily and checked in step."""

    def __init__(self, args: argparse.Namespace, ids: list[str], labels: bool, kill: bool | None) -> None:
        self.args, self.ids, self.labels, self.kill = args, ids, labels, kill
        self.shapes: dict[str, tuple[int, int]] = {}
        self.segments: list[np.ndarray | None] = []

    def preds(self) -> Iterator[np.ndarray]:
        for i in self.ids:
            p = load_prediction(self.args.pred, i)
            self.shapes[i] = p.shape
            yield p

    def gts(self) -> Iterator[list[np.ndarray]]:
        for i in self.ids:
            g = load_ground_truth(self.args.gt, i, self.labels, self.args.category)
            bad = [m.shape for m in g.maps if m.shape != self.shapes[i]]
            if bad:
                raise BoundaryInputError(f"{i}: prediction is {self.shapes[i]} but ground truth is {bad[0]}")
            use = self.kill if self.kill is not None else g.segment is not None
            if use and g.segment is None:
                raise BoundaryInputError(f"{i}: --kill-internal needs SBD ground truth (GTcls/GTinst with --class)")
            self.segments.append(g.segment if use else None)
            yield g.maps

    def segment_stream(self) -> Iterator[np.ndarray | None]:
        for k in range(len(self.ids)):
            yield self.segments[k]  # filled by gts(), which the evaluator reads first


class _Sized:
    """Gives the progress bar a total while the images are still read lazily."""

    def __init__(self, it: Iterator[np.ndarray], n: int) -> None:
        self._it, self._n = it, n

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._it

    def __len__(self) -> int:
        return self._n


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def print_table(res: BoundaryResult, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("ODS F %", "ODS R %", "ODS P %", "ODS thr", "OIS F %", "AP %", "images"):
        table.add_column(col, justify="right")
    # scores in % with two decimals, as in every leaderboard (the threshold is a probability, 0–1)
    table.add_row(*(f"{100 * v:.2f}" for v in (res.ods_f, res.ods_r, res.ods_p)), f"{res.ods_thr:.3f}",
                  *(f"{100 * v:.2f}" for v in (res.ois_f, res.ap)), str(len(res.per_image)))
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True)
    proto = get_protocol(args.edge_protocol or DATASET_PROTOCOL[args.dataset])
    max_dist = MAX_DIST[args.dataset] if args.max_dist is None else args.max_dist
    if not 0 < max_dist < 1:
        err.print(f"[red]error:[/red] --max-dist must be a fraction of the image diagonal in (0, 1), got {max_dist}",
                  soft_wrap=True)
        return 2
    if args.category is not None and not 1 <= args.category <= 255:
        err.print(f"[red]error:[/red] --class must be a class index >= 1 (SBD: 1..20), got {args.category}",
                  soft_wrap=True)
        return 2
    nms = proto.nms if args.nms is None else args.nms
    thresholds = protocol_thresholds(proto) if args.thresholds is None else resolve_thresholds(args.thresholds)
    kill = {None: "for SBD ground truth", True: "on", False: "off"}[args.kill_internal]
    Console().print(f"eval-boundary: {args.dataset}, protocol {proto.name} ({proto.reproduces}), {len(thresholds)} "
                    f"thresholds {thresholds[0]:g}..{thresholds[-1]:g}, maxDist {max_dist:g}, nms {'on' if nms else 'off'}"
                    + (f", class {args.category}" if args.category is not None else "") + f", kill_internal {kill}",
                    markup=False, highlight=False, soft_wrap=True)
    try:
        ids = resolve_ids(args.pred, args.gt, args.ids)
        inputs = _Inputs(args, ids, proto.gt_from_labels, args.kill_internal)
        res = evaluate_boundaries(_Sized(inputs.preds(), len(ids)), inputs.gts(), max_dist=max_dist, protocol=proto,
                                  thresholds=thresholds, nms=nms, workers=args.workers,
                                  segments=inputs.segment_stream())
    except (BoundaryInputError, OSError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        return 2
    killed = any(s is not None for s in inputs.segments)
    print_table(res, f"{args.dataset}: {len(ids)} images, protocol {proto.name}")
    if args.out is not None:
        payload = {"dataset": args.dataset, "edge_protocol": proto.name, "max_dist": max_dist, "nms": nms,
                   "class": args.category, "kill_internal": killed, "pred": str(args.pred), "gt": str(args.gt),
                   "ids": ids,
                   # in % as run records and tables hold them; the fields below are fractions, as MATLAB prints
                   "metrics": {"odsF": 100 * res.ods_f, "oisF": 100 * res.ois_f, "AP": 100 * res.ap},
                   **res.as_dict()}
        write_json_atomic(args.out, payload)
    return 0
