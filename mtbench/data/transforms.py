"""The shared NYUD / PASCAL pipeline of ATRC, InvPT and MQTransformer, as pure numpy functions.

Order (ATRC ``get_transformations``, copied by InvPT / MQT): random scale 0.5–2 → random crop to
the pad size, ``cat_max_ratio`` 0.75 → horizontal flip → photometric distortion → ImageNet
normalisation → centred padding → ignore regions. Evaluation: normalisation → padding → ignore
regions. Every random draw comes from one ``numpy.random.Generator`` seeded by the sample seed,
in a fixed order (scale, crop, flip, photometric), so a sample is a pure function of
``(index, sample_seed)``: resumed runs and any number of loader workers see identical crops.

Conventions, all as the references: the image is resized bilinearly and every target with
nearest neighbour (normals too, ATRC ``RandomScaling``; no renormalisation is needed since nearest
keeps unit vectors), with OpenCV's pixel-centre rules (``cv2.resize`` INTER_LINEAR / INTER_NEAREST)
re-implemented here without OpenCV; depth is divided by the scale; a flip negates normals x.
Padding is centred; the image is padded with 0 *after* normalisation (the ImageNet mean colour),
labels with 255, depth with 0 (= invalid), normals with a zero vector that the ignore step turns
into 255. Ignore regions (ATRC ``AddIgnoreRegions``): zero normals → 255 in all channels; a
human-parts map with no part pixel (only 0 / 255: no person, or a crop without one) → all 255.

Internal arrays are HxW (labels uint8, depth float32) or HxWx3 (image float32 0–255, normals
float32 with zero vectors for invalid pixels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtbench.data.base import IGNORE, IMAGENET_MEAN, IMAGENET_STD

LABELS = ("semseg", "human_parts", "sal", "edge")  # uint8 maps, padded with IGNORE
_MEAN = np.array(IMAGENET_MEAN, np.float32) * 255.0
_STD = np.array(IMAGENET_STD, np.float32) * 255.0


@dataclass(frozen=True)
class Augment:
    """Training augmentation; defaults are the ATRC / InvPT / MQT values (mmseg's distortion)."""

    scale_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    crop_tries: int = 10
    flip_prob: float = 0.5
    photometric: bool = True
    brightness_delta: float = 32.0
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta: int = 18


AUGMENT_KEYS = ("augment", "scale_range", "cat_max_ratio", "flip_prob", "photometric")


def augment_from_cfg(cfg: dict[str, Any]) -> Augment | None:
    """``augment: false`` disables training augmentation (then train samples are eval samples)."""
    if not cfg.get("augment", True):
        return None
    lo, hi = (float(v) for v in cfg.get("scale_range", (0.5, 2.0)))
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must be 0 < lo <= hi, got {(lo, hi)}")
    return Augment(scale_range=(lo, hi), cat_max_ratio=float(cfg.get("cat_max_ratio", 0.75)),
                   flip_prob=float(cfg.get("flip_prob", 0.5)), photometric=bool(cfg.get("photometric", True)))


def parse_size(value: Any, default: tuple[int, int]) -> tuple[int, int]:
    if value is None:
        return default
    if isinstance(value, int):
        return (value, value)
    h, w = (int(v) for v in value)
    if h <= 0 or w <= 0:
        raise ValueError(f"pad_size must be positive, got {value}")
    return (h, w)


# ----------------------------------------------------------------- resizing (OpenCV rules)
def nearest_index(n_src: int, n_dst: int) -> np.ndarray:
    """Source index of each output pixel, as ``cv2.resize(INTER_NEAREST)``: floor(x · src/dst)."""
    inv = 1.0 / (n_dst / n_src)
    return np.minimum(np.floor(np.arange(n_dst) * inv).astype(np.int64), n_src - 1)


def linear_taps(n_src: int, n_dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, w) with out = (1−w)·src[i0] + w·src[i1], as ``cv2.resize(INTER_LINEAR)``:
    half-pixel centres, clamped at the borders, no antialiasing."""
    scale = 1.0 / (n_dst / n_src)
    f = ((np.arange(n_dst) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    w = f - i0
    w[i0 < 0] = 0
    i0[i0 < 0] = 0
    last = i0 >= n_src - 1
    w[last] = 0
    i0[last] = n_src - 1
    return i0, np.minimum(i0 + 1, n_src - 1), w.astype(np.float32)


def _window(n: int, start: int | None, length: int | None) -> slice:
    return slice(start or 0, (start or 0) + (n if length is None else length))


def resize_nearest(x: np.ndarray, size: tuple[int, int], window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Resize HxW[xC] to ``size`` (nearest); ``window`` = (top, left, h, w) returns only that crop
    of the resized array, computed directly (identical values, less work)."""
    top, left, h, w = window or (0, 0, None, None)
    rows = nearest_index(x.shape[0], size[0])[_window(size[0], top, h)]
    cols = nearest_index(x.shape[1], size[1])[_window(size[1], left, w)]
    return np.take(np.take(x, rows, axis=0), cols, axis=1)


def resize_bilinear(x: np.ndarray, size: tuple[int, int], window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Bilinear resize of a float HxWxC image (horizontal pass, then vertical, as OpenCV)."""
    top, left, h, w = window or (0, 0, None, None)
    c0, c1, cw = (a[_window(size[1], left, w)] for a in linear_taps(x.shape[1], size[1]))
    r0, r1, rw = (a[_window(size[0], top, h)] for a in linear_taps(x.shape[0], size[0]))
    rows = np.unique(np.concatenate([r0, r1]))
    lut = np.zeros(x.shape[0], np.int64)
    lut[rows] = np.arange(len(rows))
    xs = x[rows].astype(np.float32, copy=False)
    cw3 = cw[None, :, None]
    horiz = xs[:, c0] * (1 - cw3) + xs[:, c1] * cw3
    rw3 = rw[:, None, None]
    return (horiz[lut[r0]] * (1 - rw3) + horiz[lut[r1]] * rw3).astype(np.float32)


# ----------------------------------------------------------------- random geometry
def scaled_size(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """``int(h·s), int(w·s)`` as ATRC ``RandomScaling``."""
    return int(shape[0] * scale), int(shape[1] * scale)


def class_balanced(seg: np.ndarray, cat_max_ratio: float) -> bool:
    """mmseg's test: more than one labelled class and none above ``cat_max_ratio`` of them."""
    counts = np.bincount(seg.ravel(), minlength=IGNORE + 1)
    counts = np.delete(counts, IGNORE)
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def draw_crop(rng: np.random.Generator, shape: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner, uniform over the valid offsets (0 where the image is smaller)."""
    return (int(rng.integers(0, max(shape[0] - crop[0], 0) + 1)),
            int(rng.integers(0, max(shape[1] - crop[1], 0) + 1)))


def choose_crop(rng: np.random.Generator, shape: tuple[int, int], crop: tuple[int, int],
                semseg_crop=None, cat_max_ratio: float = 1.0, tries: int = 10) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the crop, mmseg ``RandomCrop`` semantics: with ``cat_max_ratio`` < 1,
    a crop whose semseg labels are dominated by one class is redrawn, up to ``tries`` times; the
    draw after the last failed try is kept unchecked. ``semseg_crop(top, left, h, w)`` gives the
    labels of a candidate. An image no larger than the crop is kept whole (no draw)."""
    h, w = min(crop[0], shape[0]), min(crop[1], shape[1])
    if (h, w) == tuple(shape):
        return 0, 0, h, w
    top, left = draw_crop(rng, shape, crop)
    if semseg_crop is not None and cat_max_ratio < 1.0:
        for _ in range(tries):
            if class_balanced(semseg_crop(top, left, h, w), cat_max_ratio):
                break
            top, left = draw_crop(rng, shape, crop)
    return top, left, h, w


# ----------------------------------------------------------------- photometric distortion
def _convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


_IDX = np.arange(256)
_SDIV = np.where(_IDX > 0, np.round((255 << 12) / np.maximum(_IDX, 1)), 0).astype(np.int32)
_HDIV = np.where(_IDX > 0, np.round((180 << 12) / (6.0 * np.maximum(_IDX, 1))), 0).astype(np.int32)


def rgb_to_hsv(img: np.ndarray) -> np.ndarray:
    """uint8 RGB → uint8 HSV with H in [0, 180), OpenCV's 8-bit ``COLOR_RGB2HSV`` arithmetic
    (12-bit fixed-point division tables; equal to ``cv2.cvtColor``, checked on all inputs)."""
    r, g, b = (img[..., i].astype(np.int32) for i in range(3))
    v = np.maximum(np.maximum(r, g), b)
    diff = v - np.minimum(np.minimum(r, g), b)
    s = (diff * _SDIV[v] + (1 << 11)) >> 12
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * _HDIV[diff] + (1 << 11)) >> 12
    h += 180 * (h < 0)
    return np.stack([h, s, v], -1).astype(np.uint8)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """uint8 HSV (H in [0, 180)) → uint8 RGB as OpenCV 4's vectorised 8-bit ``COLOR_HSV2RGB``
    (float32 math with fused multiply-adds, then truncation; equal to ``cv2.cvtColor`` 4.12 on
    all inputs except the last few pixels of a row, which its scalar tail rounds instead)."""
    f32 = np.float32
    h = hsv[..., 0].astype(f32) * f32(6.0 / 180.0)
    s = hsv[..., 1].astype(f32) * f32(1.0 / 255.0)
    v = hsv[..., 2].astype(f32) * f32(1.0 / 255.0)
    sector = np.trunc(h)
    f = h - sector
    sector = sector.astype(np.int8) % 6

    def fnmadd(a, b):  # 1 − a·b rounded once, as the fused multiply-add of the compiled code
        return (1.0 - a.astype(np.float64) * b.astype(np.float64)).astype(f32)

    tab = (v, v * (f32(1.0) - s), v * fnmadd(s, f), v * fnmadd(s, f32(1.0) - f))
    # OpenCV's sector table: which tab entry is r, g and b in each of the 6 hue sectors
    rgb = [np.choose(sector, [tab[k] for k in ks]) for ks in ((0, 2, 1, 1, 3, 0), (3, 0, 0, 2, 1, 1), (1, 1, 3, 0, 0, 2))]
    return np.stack([np.trunc(np.clip(c * f32(255.0), 0, 255)) for c in rgb], -1).astype(np.uint8)


def photometric_distortion(img: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion`` as InvPT/ATRC apply it on the uint8 image: each step with
    p = 0.5 — brightness ±32, contrast ×[0.5, 1.5] (before or after the colour steps, chosen at
    random), saturation ×[0.5, 1.5], hue ±18 (of 180). No channel swap (mmseg has none)."""
    img = img.astype(np.uint8)  # truncation, as the references' astype on the float image
    if rng.random() < 0.5:
        img = _convert(img, beta=rng.uniform(-aug.brightness_delta, aug.brightness_delta))
    contrast_first = rng.random() < 0.5

    def contrast(x):
        return _convert(x, alpha=rng.uniform(*aug.contrast_range)) if rng.random() < 0.5 else x

    if contrast_first:
        img = contrast(img)
    if rng.random() < 0.5:
        hsv = rgb_to_hsv(img)
        hsv[..., 1] = _convert(hsv[..., 1], alpha=rng.uniform(*aug.saturation_range))
        img = hsv_to_rgb(hsv)
    if rng.random() < 0.5:
        hsv = rgb_to_hsv(img)
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + int(rng.integers(-aug.hue_delta, aug.hue_delta))) % 180
        img = hsv_to_rgb(hsv)
    if not contrast_first:
        img = contrast(img)
    return img.astype(np.float32)


# ----------------------------------------------------------------- normalise, pad, ignore
def normalize(img: np.ndarray) -> np.ndarray:
    return ((img.astype(np.float32) - _MEAN) / _STD).astype(np.float32)


def pad_centered(x: np.ndarray, size: tuple[int, int], value: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad to at least ``size``, content centred (ATRC ``PadImage``); returns (array, (top, left))."""
    dh, dw = max(size[0] - x.shape[0], 0), max(size[1] - x.shape[1], 0)
    top, left = dh // 2, dw // 2
    out = np.full((x.shape[0] + dh, x.shape[1] + dw) + x.shape[2:], value, dtype=x.dtype)
    out[top:top + x.shape[0], left:left + x.shape[1]] = x
    return out, (top, left)


def unit_normals(n: np.ndarray) -> np.ndarray:
    """Unit vectors; vectors shorter than 0.5 are the datasets' 'no normal' (a zero vector, which
    an 8-bit PNG stores as ≈(127, 127, 127)) and become exact zeros."""
    n = n.astype(np.float32, copy=False)
    norm = np.sqrt(n[..., 0] ** 2 + n[..., 1] ** 2 + n[..., 2] ** 2)[..., None]
    return np.where(norm >= 0.5, n / np.maximum(norm, 1e-12), np.float32(0)).astype(np.float32)


def ignore_regions(arrays: dict[str, np.ndarray]) -> None:
    """ATRC ``AddIgnoreRegions``, in place: zero normals → 255; part maps without parts → 255."""
    if "normals" in arrays:
        n = arrays["normals"]
        n[~n.any(axis=-1)] = IGNORE
    if "human_parts" in arrays:
        p = arrays["human_parts"]
        if ((p == 0) | (p == IGNORE)).all():
            p[...] = IGNORE


# ----------------------------------------------------------------- the pipeline
def prepare(raw: dict[str, np.ndarray], pad_size: tuple[int, int], seed: int | None,
            aug: Augment | None) -> tuple[dict[str, np.ndarray], tuple[int, int], tuple[int, int]]:
    """Raw arrays (``image`` float RGB 0–255 plus targets) → padded arrays, native size, offset.

    ``seed`` None (evaluation) normalises and pads only; an image larger than ``pad_size`` is an
    error there, since the batch would not stack. ``semseg`` drives the ``cat_max_ratio`` test
    whenever it is in ``raw`` (the datasets always load it, as ATRC does)."""
    arrays = dict(raw)
    shape = arrays["image"].shape[:2]
    if seed is not None and aug is not None:
        arrays = _augment(arrays, pad_size, np.random.default_rng(seed), aug)
    elif shape[0] > pad_size[0] or shape[1] > pad_size[1]:
        raise ValueError(f"image of {shape[0]}x{shape[1]} is larger than pad_size {pad_size}: "
                         f"set the dataset option pad_size to at least the largest image")
    size = arrays["image"].shape[:2]
    arrays["image"] = normalize(arrays["image"])
    offset = (0, 0)
    for key, x in arrays.items():
        value = IGNORE if key in LABELS else 0
        arrays[key], offset = pad_centered(x, pad_size, value)
    ignore_regions(arrays)
    return arrays, size, offset


def _augment(arrays: dict[str, np.ndarray], crop: tuple[int, int], rng: np.random.Generator,
             aug: Augment) -> dict[str, np.ndarray]:
    shape = arrays["image"].shape[:2]
    scale = float(rng.uniform(*aug.scale_range))
    size = scaled_size(shape, scale) if scale != 1.0 else shape
    seg = arrays.get("semseg")
    semseg_crop = (lambda t, l, h, w: resize_nearest(seg, size, (t, l, h, w))) if seg is not None else None
    window = choose_crop(rng, size, crop, semseg_crop, aug.cat_max_ratio, aug.crop_tries)
    out = {}
    for key, x in arrays.items():
        out[key] = resize_bilinear(x, size, window) if key == "image" else resize_nearest(x, size, window)
    if "depth" in out:
        out["depth"] = (out["depth"] / np.float32(scale)).astype(np.float32)
    if rng.random() < aug.flip_prob:
        out = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in out.items()}
        if "normals" in out:
            out["normals"][..., 0] *= -1
    if aug.photometric:
        out["image"] = photometric_distortion(out["image"], rng, aug)
    return out


def to_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The dtypes of ``mtbench.data.base``: image (3,H,W) float32, labels int64, edge / depth
    float32 (H,W), normals (3,H,W) float32."""
    out = {}
    for key, x in arrays.items():
        if x.ndim == 3:
            out[key] = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))
        elif key in ("semseg", "human_parts", "sal"):
            out[key] = torch.from_numpy(x.astype(np.int64))
        else:
            out[key] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return out
