"""Structured-edge non-maximum suppression, as SEISM applies it before scoring a soft edge map.

The published multi-task boundary numbers (MTI-Net, ATRC, InvPT, ...) come from SEISM's
``read_one_cont_png``: the 8-bit prediction is read as single precision, an orientation map is
estimated from the smoothed map's second derivatives, and Dollár's ``edgesNmsMex(E, O, 1, 5, 1.01)``
keeps only ridge maxima. A raw network output is several pixels thick; without this step the
thresholded map is thinned into wiggly skeletons and the score drops, so the same NMS is needed
to compare with the papers. Everything is computed in float32 like the MATLAB/MEX original.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve1d

# edgesNmsMex(E, O, r, s, m) as called by SEISM's read_one_cont_png.
NMS_RADIUS = 1  # r: compare against interpolated neighbours at distance 1 along the normal
NMS_BORDER = 5  # s: damp responses linearly within 5 px of the image border
NMS_MULTIPLIER = 1.01  # m: a pixel survives unless a neighbour beats 1.01 x its value
ORIENTATION_SMOOTHING = 4  # convTri(E, 4) before the derivatives


def conv_tri(image: np.ndarray, r: int) -> np.ndarray:
    """Dollár's ``convTri``: separable triangle filter [1..r+1..1]/(r+1)^2, symmetric padding.

    scipy's ``reflect`` mode (d c b a | a b c d) is MATLAB's ``padarray(..., 'symmetric')``.
    """
    if r == 0:
        return image.astype(np.float32, copy=True)
    if r < 1 or int(r) != r:
        raise ValueError(f"conv_tri supports integer radii >= 1, got {r}")
    r = int(r)
    f = np.concatenate([np.arange(1, r + 2), np.arange(r, 0, -1)]).astype(np.float32) / np.float32((r + 1) ** 2)
    out = convolve1d(image.astype(np.float32), f, axis=0, mode="reflect")
    return convolve1d(out, f, axis=1, mode="reflect")


def edge_orientation(edge: np.ndarray) -> np.ndarray:
    """Normal orientation in [0, pi) from second derivatives of ``convTri(edge, 4)``.

    ``gradient2`` is MATLAB's ``gradient`` (central differences inside, one-sided at the border),
    i.e. ``np.gradient`` with unit spacing; x runs along columns, y along rows.
    """
    smooth = conv_tri(edge, ORIENTATION_SMOOTHING)
    oy, ox = np.gradient(smooth)
    oxx = np.gradient(ox, axis=1)
    oyy, oxy = np.gradient(oy)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.arctan(oyy * np.sign(-oxy) / (oxx + np.float32(1e-5)))
    return np.mod(o, np.pi).astype(np.float32)


def _interp(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup with the clamping of edgesNmsMex (coordinates kept inside [0, size-1.001])."""
    h, w = image.shape
    x = np.clip(x, 0, w - 1.001).astype(np.float32)
    y = np.clip(y, 0, h - 1.001).astype(np.float32)
    x0 = x.astype(np.int64)
    y0 = y.astype(np.int64)
    dx0 = x - x0
    dy0 = y - y0
    dx1 = np.float32(1) - dx0
    dy1 = np.float32(1) - dy0
    return (image[y0, x0] * dx1 * dy1 + image[y0, x0 + 1] * dx0 * dy1
            + image[y0 + 1, x0] * dx1 * dy0 + image[y0 + 1, x0 + 1] * dx0 * dy0)


def structured_edge_nms(edge: np.ndarray, r: int = NMS_RADIUS, s: int = NMS_BORDER,
                        m: float = NMS_MULTIPLIER, orientation: np.ndarray | None = None) -> np.ndarray:
    """``edgesNmsMex``: zero every pixel that a neighbour along its normal beats, damp the border.

    ``edge`` is a soft map in [0, 1] (H, W); returns float32 of the same shape. The orientation is
    computed with :func:`edge_orientation` unless given.
    """
    e0 = np.ascontiguousarray(edge, dtype=np.float32)
    if e0.ndim != 2:
        raise ValueError(f"edge map must be 2-D, got shape {e0.shape}")
    h, w = e0.shape
    o = edge_orientation(e0) if orientation is None else orientation.astype(np.float32)
    out = e0.copy()
    ys, xs = np.nonzero(e0)
    if ys.size:
        val = e0[ys, xs] * np.float32(m)
        cos_o = np.cos(o[ys, xs])
        sin_o = np.sin(o[ys, xs])
        fx = xs.astype(np.float32)
        fy = ys.astype(np.float32)
        beaten = np.zeros(ys.size, dtype=bool)
        for d in range(-r, r + 1):
            if d == 0:
                continue
            nb = _interp(e0, fx + np.float32(d) * cos_o, fy + np.float32(d) * sin_o)
            beaten |= val < nb
        out[ys[beaten], xs[beaten]] = 0
    # Border damping: columns/rows at distance k < s from an edge are scaled by k/s.
    s = min(s, w // 2, h // 2)
    if s > 0:
        ramp = np.arange(s, dtype=np.float32) / np.float32(s)
        out[:, :s] *= ramp[None, :]
        out[:, w - s:] *= ramp[::-1][None, :]
        out[:s, :] *= ramp[:, None]
        out[h - s:, :] *= ramp[::-1][:, None]
    return out
