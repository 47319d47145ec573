"""Fixed colour maps for predictions, shared by the report and ``bench.py predict``: the same value has the same
colour in every figure. Readable in print and by colour-blind readers: labels from Paul Tol's qualitative sets
(PASCAL's own VOC palette on PASCAL, and for more classes than a colour-blind-safe set holds), depth in viridis
over one range per image, normals as RGB, edges and saliency in grey."""
from __future__ import annotations

import numpy as np

# Paul Tol's 'bright' (7) then 'muted' colours not too close to them: distinguishable under the common
# colour-vision deficiencies (https://personal.sron.nl/~pault/).
CB_SAFE = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB",
           "#332288", "#117733", "#882255", "#DDCC77", "#44AA99"]
IGNORE_RGB = (0, 0, 0)
INVALID_GREY = 128


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved class ids), as the VOC devkit's ``labelcolormap`` builds it."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def _hex(h: str) -> tuple[int, int, int]:
    return tuple(int(h[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def label_palette(dataset: str, num_classes: int) -> np.ndarray:
    """(256, 3) uint8: class id → colour; 255 (ignore) is black."""
    if dataset == "pascal" or num_classes > len(CB_SAFE):
        pal = voc_palette(256)
    else:
        pal = np.zeros((256, 3), np.uint8)
        for i, h in enumerate(CB_SAFE):
            pal[i] = _hex(h)
    pal[255] = IGNORE_RGB
    return pal


def depth_range(*arrays: np.ndarray) -> tuple[float, float]:
    """One range for an image, from its ground truth's valid pixels (depth > 0), shared by every method."""
    vals = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays]) if arrays else np.zeros(0)
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = float(vals.min()), float(vals.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def colourise(kind: str, array: np.ndarray, *, dataset: str = "", num_classes: int = 0,
              value_range: tuple[float, float] | None = None, target: bool = False, task: str = "") -> np.ndarray:
    """A prediction or target (as ``mtbench.prediction_io`` reads it) → (H, W, 3) uint8 RGB."""
    a = np.asarray(array)
    if kind == "labels":
        pal = label_palette(dataset, num_classes)
        return pal[np.clip(a.astype(np.int64), 0, 255)]
    if kind == "depth":
        from matplotlib import colormaps

        lo, hi = value_range or depth_range(a)
        x = np.clip((a.astype(np.float64) - lo) / (hi - lo), 0, 1)
        rgb = (colormaps["viridis"](x)[..., :3] * 255 + 0.5).astype(np.uint8)
        rgb[~(np.isfinite(a) & (a > 0))] = INVALID_GREY  # invalid depth (0) shows grey
        return rgb
    if kind == "normals":
        n = a.astype(np.float64)
        invalid = (n == 255).all(axis=0) | (np.abs(n).sum(axis=0) == 0)
        rgb = (np.clip((n + 1) / 2, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)
        rgb[invalid] = IGNORE_RGB
        return np.ascontiguousarray(rgb)
    if kind == "probability":
        if target:  # 0 / 1 / 255 = ignore
            p = np.where(a == 255, INVALID_GREY / 255, (a == 1).astype(np.float64))
        else:
            p = a.astype(np.float64)
        # boundaries dark on white (as BSDS draws them); saliency white on black
        g = 1 - p if task == "edge" else p
        if target:
            g = np.where(a == 255, INVALID_GREY / 255, g)
        grey = (np.clip(g, 0, 1) * 255 + 0.5).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    raise ValueError(f"unknown prediction kind '{kind}'")
