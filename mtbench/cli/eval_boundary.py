"""``bench.py eval-boundary``: score a folder of 8-bit PNG edge maps against boundary ground truth.

This is how a published or exported set of predictions is checked against the papers' numbers
without MATLAB: the defaults follow SEISM for nyud/pascal (NMS on, 101 HED thresholds) and the
BSDS benchmark for bsds (no NMS, 99 thresholds).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import scipy.io
from PIL import Image

from mtbench.metrics.boundary import MAX_DIST, BoundaryResult, evaluate_boundaries, hed_thresholds


class BoundaryInputError(ValueError):
    """A problem with the input folders, reported to the user without a traceback."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", type=Path, required=True, help="folder of <id>.png, 8-bit, prob = value/255")
    parser.add_argument("--gt", type=Path, required=True,
                        help="ground truth: <id>.mat (BSDS groundTruth cell) or, for nyud/pascal, <id>.png (0/255)")
    parser.add_argument("--dataset", required=True, choices=sorted(MAX_DIST),
                        help="sets maxDist (bsds/pascal 0.0075, nyud 0.011) and the defaults below")
    parser.add_argument("--thresholds", type=int, default=None,
                        help="N uniform BSDS thresholds (default: 99 for bsds, SEISM's 101 HED thresholds otherwise)")
    parser.add_argument("--nms", action=argparse.BooleanOptionalAction, default=None,
                        help="structured-edge NMS before thresholding (default: on for nyud/pascal, off for bsds)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default min(cpus, 8))")
    parser.add_argument("--ids", type=Path, default=None, help="file with one image id per line (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="write the full result as JSON")


def _ids_in(folder: Path, suffixes: tuple[str, ...]) -> set[str]:
    if not folder.is_dir():
        raise BoundaryInputError(f"not a folder: {folder}")
    return {p.stem for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file()}


def _name_some(ids: set[str] | list[str], limit: int = 10) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def resolve_ids(pred_dir: Path, gt_dir: Path, dataset: str, ids_file: Path | None) -> list[str]:
    """The ids to score; every one needs a prediction and a GT file, and without ``--ids`` the
    two folders must hold the same ids (a stray or missing file usually means a wrong folder)."""
    preds = _ids_in(pred_dir, (".png",))
    gts = _ids_in(gt_dir, (".mat",) if dataset == "bsds" else (".mat", ".png"))
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


def load_prediction(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode != "L":
            raise BoundaryInputError(f"{path}: expected an 8-bit single-channel PNG, got mode {im.mode}")
        return np.asarray(im, dtype=np.uint8)


def load_ground_truth(gt_dir: Path, image_id: str, dataset: str) -> list[np.ndarray]:
    """Annotator maps: the BSDS ``groundTruth`` cell (``Boundaries`` of each entry) or one PNG."""
    mat = gt_dir / f"{image_id}.mat"
    png = gt_dir / f"{image_id}.png"
    if dataset != "bsds" and png.is_file():
        with Image.open(png) as im:
            return [np.asarray(im.convert("L")) > 0]
    data = scipy.io.loadmat(mat)
    if "groundTruth" not in data:
        keys = [k for k in data if not k.startswith("__")]
        raise BoundaryInputError(f"{mat}: no 'groundTruth' variable (found {keys})")
    cell = data["groundTruth"]
    return [np.asarray(cell[0, k]["Boundaries"][0, 0]).astype(bool) for k in range(cell.shape[1])]


def _inputs(args: argparse.Namespace, ids: list[str]) -> tuple[Iterator[np.ndarray], Iterator[list[np.ndarray]]]:
    shapes: dict[str, tuple[int, int]] = {}

    def preds() -> Iterator[np.ndarray]:
        for i in ids:
            p = load_prediction(args.pred / f"{i}.png")
            shapes[i] = p.shape
            yield p

    def gts() -> Iterator[list[np.ndarray]]:
        for i in ids:
            g = load_ground_truth(args.gt, i, args.dataset)
            bad = [m.shape for m in g if m.shape != shapes[i]]
            if bad:
                raise BoundaryInputError(f"{i}: prediction is {shapes[i]} but ground truth is {bad[0]}")
            yield g

    return preds(), gts()


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
    for col in ("ODS F", "ODS R", "ODS P", "ODS thr", "OIS F", "AP", "images"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{v:.4f}" for v in (res.ods_f, res.ods_r, res.ods_p, res.ods_thr, res.ois_f, res.ap)),
                  str(len(res.per_image)))
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    err = Console(stderr=True)
    try:
        ids = resolve_ids(args.pred, args.gt, args.dataset, args.ids)
        nms = args.nms if args.nms is not None else args.dataset != "bsds"
        if args.thresholds is not None:
            thresholds = args.thresholds
        else:
            thresholds = 99 if args.dataset == "bsds" else hed_thresholds()
        preds, gts = _inputs(args, ids)
        res = evaluate_boundaries(_Sized(preds, len(ids)), gts, max_dist=MAX_DIST[args.dataset],
                                  thresholds=thresholds, nms=nms, workers=args.workers)
    except (BoundaryInputError, OSError) as e:
        err.print(f"[red]error:[/red] {e}")
        return 2
    print_table(res, f"boundaries: {args.dataset}, {len(ids)} images, nms={'on' if nms else 'off'}")
    if args.out is not None:
        payload = {"dataset": args.dataset, "max_dist": MAX_DIST[args.dataset], "nms": nms,
                   "pred": str(args.pred), "gt": str(args.gt), "ids": ids, **res.as_dict()}
        write_json_atomic(args.out, payload)
    return 0
