"""``python bench.py data check --dataset nyud|pascal --data-dir DIR``: is a dataset folder whole?

A training run that dies at iteration 30k on one truncated JPEG wastes a GPU day, so this reads
every file of every listed id through the *same* readers the loaders use and reports, per split
and source file kind: counts, image sizes, value ranges, missing and unreadable files; plus split
problems (a count other than the published one, duplicate ids, ids in both train and val).
The exit code is 1 when anything is wrong, and every bad file is named.

``quick_check`` is the fast part, run by every grid on a real dataset before its first run: split lists, every
file present and decodable (images decoded, ``.npy`` headers and sizes, ``.mat`` headers), images that fit the
padding; no value ranges. A clean result is remembered (keyed by every file's size and mtime), so it costs a
stat per file the next time.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mtbench.data import cityscapes_mtan, nyud, nyuv2_mtan, pascal

DATASETS = {"nyud": nyud, "pascal": pascal, "nyuv2_mtan": nyuv2_mtan, "cityscapes_mtan": cityscapes_mtan}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="which dataset layout to expect")
    p.add_argument("--data-dir", required=True, help="the dataset folder (or its parent)")
    p.add_argument("--splits", default="train,val", help="comma list of splits to check (default: train,val)")
    p.add_argument("--expect", default=None, metavar="train=N,val=M",
                   help="expected split sizes (default: the published ones, e.g. 795/654 for nyud)")
    p.add_argument("--limit", type=int, default=None, help="read only the first N ids of each split")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="reader processes")


@dataclass
class Stat:
    files: int = 0
    ok: int = 0
    missing: int = 0
    bad: int = 0
    sizes: set = field(default_factory=set)
    lo: float = np.inf
    hi: float = -np.inf


def _check_one(task: tuple) -> list[tuple[str, str, str, object]]:
    """(dataset, layout, id) → [(file kind, status, path, (size, min, max) or message)]."""
    name, layout, image_id = task
    module = DATASETS[name]
    out, shape = [], None
    for kind in module.SOURCES:
        path = layout.path(kind, image_id)
        if not path.is_file():
            tried = getattr(layout, "candidates", lambda k, i: [path])(kind, image_id)
            also = f" (nor {', '.join(str(t) for t in tried if t != path)})" if len(tried) > 1 else ""
            out.append((kind, "missing", str(path), f"missing{also}"))
            continue
        if kind == "human_parts" and shape is None:
            out.append((kind, "bad", str(path), "not checked: the image is unreadable"))
            continue
        try:
            x = module.read_source(layout, kind, image_id, shape)
        except Exception as e:  # any decoder error is a finding, not a crash
            out.append((kind, "bad", str(path), str(e).replace(f"{path}: ", "")))
            continue
        if kind == "image":
            shape = x.shape[:2]
        elif shape is not None and x.shape[:2] != shape:
            out.append((kind, "bad", str(path), f"size {x.shape[:2]} differs from the image's {shape}"))
            continue
        out.append((kind, "ok", str(path), (x.shape[:2], float(np.min(x)) if x.size else 0.0,
                                            float(np.max(x)) if x.size else 0.0)))
    return out


def _expected(spec: str | None, default: dict[str, int]) -> dict[str, int]:
    if not spec:
        return dict(default)
    out = dict(default)
    for part in spec.split(","):
        split, n = part.split("=")
        out[split.strip()] = int(n)
    return out


def _split_problems(module, layout, splits, expected) -> tuple[dict[str, list[str]], list[str]]:
    ids_by_split, problems = {}, []
    for split in splits:
        f = layout.split_file(split)
        if hasattr(module, "split_ids"):  # the MTAN folders: no list, the ids are 0..count-1 of image/*.npy
            ids = module.split_ids(layout, split)
            if not ids:
                problems.append(f"{f}: split folder missing or empty")
                continue
        elif not f.is_file():
            problems.append(f"{f}: split file missing")
            continue
        else:
            ids = nyud.read_ids(f)
        ids_by_split[split] = ids
        if split in expected and len(ids) != expected[split]:
            problems.append(f"{f}: {len(ids)} ids, expected {expected[split]}")
        dups = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
        if dups:
            problems.append(f"{f}: duplicate ids {dups[:10]}")
    if "train" in ids_by_split and "val" in ids_by_split:
        both = sorted(set(ids_by_split["train"]) & set(ids_by_split["val"]))
        if both:
            problems.append(f"{len(both)} ids in both train and val, e.g. {both[:5]}")
    return ids_by_split, problems


def _fmt_sizes(sizes: set) -> str:
    if not sizes:
        return "-"
    hs, ws = [s[0] for s in sizes], [s[1] for s in sizes]
    lo, hi = f"{min(hs)}x{min(ws)}", f"{max(hs)}x{max(ws)}"
    return lo if lo == hi and len(sizes) == 1 else f"{lo} .. {hi}"


def _fmt_range(st: Stat) -> str:
    return "-" if st.lo > st.hi else f"{st.lo:.4g} .. {st.hi:.4g}"


def run(args: argparse.Namespace) -> int:
    console = Console()
    name = args.dataset
    module = DATASETS[name]
    try:
        layout = module.find_layout(args.data_dir)
    except (ValueError, FileNotFoundError) as e:
        console.print(str(e), markup=False)
        return 1
    splits = [s.strip() for s in getattr(args, "splits", "train,val").split(",") if s.strip()]
    expected = _expected(getattr(args, "expect", None), module.SPLIT_SIZES)
    ids_by_split, problems = _split_problems(module, layout, splits, expected)
    limit = getattr(args, "limit", None)
    stats: dict[tuple[str, str], Stat] = {(s, k): Stat() for s in ids_by_split for k in module.SOURCES}
    jobs = [(split, (name, layout, i)) for split, ids in ids_by_split.items() for i in ids[:limit]]
    workers = max(1, int(getattr(args, "workers", 1) or 1))
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_check_one, [j for _, j in jobs], chunksize=16))
    else:
        results = [_check_one(j) for _, j in jobs]
    for (split, _), records in zip(jobs, results):
        for kind, status, path, info in records:
            st = stats[(split, kind)]
            st.files += 1
            if status == "ok":
                shape, lo, hi = info
                st.ok += 1
                st.sizes.add(tuple(shape))
                st.lo, st.hi = min(st.lo, lo), max(st.hi, hi)
            else:
                setattr(st, status, getattr(st, status) + 1)
                problems.append(f"{path}: {info}")
    table = Table(title=f"{name}: {layout.root}" + (f" ({getattr(layout, 'variant', '')})" if hasattr(layout, "variant") else ""))
    for col in ("split", "file kind", "checked", "ok", "missing", "bad", "sizes (HxW)", "values"):
        table.add_column(col, justify="right" if col in ("checked", "ok", "missing", "bad") else "left")
    for (split, kind), st in stats.items():
        style = "red" if st.missing or st.bad else None
        table.add_row(split, kind, str(st.files), str(st.ok), str(st.missing), str(st.bad), _fmt_sizes(st.sizes),
                      _fmt_range(st), style=style)
    console.print(table)
    counts = ", ".join(f"{s}: {len(ids)} ids (expected {expected.get(s, '?')})" for s, ids in ids_by_split.items())
    console.print(counts, markup=False)
    if problems:
        console.print(f"{len(problems)} problem(s):", style="red")
        for p in problems:
            console.print(f"  {p}", markup=False, soft_wrap=True)
        return 1
    console.print("no problems found", style="green")
    return 0


# --- the fast part, before a grid trains -----------------------------------------------------------------------

def _readable(path: Path) -> tuple[int, int] | None:
    """Decode enough of one file to know it is whole; the (H, W) of images. Raises on a bad file."""
    if path.suffix == ".npy":
        np.load(path, mmap_mode="r", allow_pickle=False)  # header + size: a truncated file fails here
        return None
    if path.suffix == ".mat":
        import scipy.io

        scipy.io.whosmat(str(path))
        return None
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # a truncated image fails here, as in training
        return im.size[1], im.size[0]


def _quick_one(task: tuple) -> list[tuple[str, str, object]]:
    """(dataset, layout, id, file kinds) → [(kind, path, (H, W) | None | error message)]."""
    name, layout, image_id, kinds = task
    out = []
    for kind in kinds:
        path = layout.path(kind, image_id)
        try:
            out.append((kind, str(path), _readable(path) if path.is_file() else "missing"))
        except Exception as e:  # noqa: BLE001 — any decoder error is a finding
            out.append((kind, str(path), f"unreadable ({type(e).__name__}: {e})"))
    return out


def _fingerprint(layout, files: list[Path], cfg_pad: tuple[int, int]) -> str:
    h = hashlib.sha1(json.dumps([str(layout.root), list(cfg_pad)]).encode())
    for f in files:
        try:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}|missing\n".encode())
    return h.hexdigest()[:16]


def needed_kinds(module, tasks: tuple[str, ...]) -> list[str]:
    """The source files a run of ``tasks`` reads: the image, semseg (always read: the crop test), each task's,
    and PASCAL's Context label map for edges and normals. A dataset whose file kinds are not task names says so."""
    if hasattr(module, "needed_kinds"):
        return module.needed_kinds(tasks)
    wanted = {"image", "semseg", *tasks} | ({"context"} if {"edge", "normals"} & set(tasks) else set())
    return [k for k in module.SOURCES if k in wanted]


def quick_check(name: str, cfg: dict, tasks: tuple[str, ...], cache_dir: Path | None = None,
                workers: int | None = None, splits: tuple[str, ...] = ("train", "val")
                ) -> tuple[list[str], list[str]]:
    """(problems, notes) of a real dataset folder for a run of ``tasks``: problems stop a grid, notes are said
    (e.g. split sizes other than the published ones, as in a debugging subset)."""
    module = DATASETS[name]
    layout = module.find_layout(cfg.get("data_dir"), **{k: cfg[k] for k in ("variant", "classes") if k in cfg})
    ids_by_split, problems = _split_problems(module, layout, splits, {})
    notes = [f"{s}: {len(ids)} ids, the published split has {module.SPLIT_SIZES[s]}"
             for s, ids in ids_by_split.items() if len(ids) != module.SPLIT_SIZES.get(s, len(ids))]
    if problems:
        return problems, notes
    pad = module.pad_size(layout, cfg)
    ids = sorted({i for split_ids in ids_by_split.values() for i in split_ids})
    kinds = needed_kinds(module, tasks)
    files = [layout.path(k, i) for i in ids for k in kinds]
    stamp = Path(cache_dir) / "datacheck" / f"{name}-{_fingerprint(layout, files, pad)}.json" if cache_dir else None
    if stamp is not None and stamp.is_file():
        return [], notes
    jobs = [(name, layout, i, kinds) for i in ids]
    workers = workers or min(8, os.cpu_count() or 1)
    if workers > 1 and len(jobs) > 64:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_quick_one, jobs, chunksize=32))
    else:
        results = [_quick_one(j) for j in jobs]
    too_big: dict[tuple[int, int], list[str]] = {}
    for found in results:
        for kind, path, info in found:
            if isinstance(info, str):
                problems.append(f"{path}: {info}")
            elif kind == "image" and info and (info[0] > pad[0] or info[1] > pad[1]):
                too_big.setdefault(tuple(info), []).append(path)
    for size, paths in too_big.items():
        problems.append(f"{len(paths)} image(s) of {size[0]}x{size[1]}, e.g. {paths[0]}: {module.size_hint(size, pad)}")
    if not problems and stamp is not None:
        from mtbench.atomic import atomic_write_text

        atomic_write_text(stamp, json.dumps({"root": str(layout.root), "files": len(files)}) + "\n")
    return problems, notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.py data check", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
