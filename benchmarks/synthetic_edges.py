"""The synthetic NYUD-size boundary case the boundary benchmarks share (numpy and scipy only, so that
pyedgeeval_speed.py can run it in a venv without torch)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def synthetic_nyud(seed: int = 0, h: int = 425, w: int = 560) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 prediction, boolean GT): a Voronoi boundary map, and as prediction a blurred,
    1-px-shifted copy plus textured noise, i.e. thick soft ridges like a network output."""
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, [h, w], size=(40, 2))
    yy, xx = np.mgrid[:h, :w]
    d2 = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    lab = np.argmin(d2, axis=-1)
    gt = ndi.maximum_filter(lab, 2) != ndi.minimum_filter(lab, 2)
    soft = ndi.gaussian_filter(np.roll(gt.astype(float), 1, axis=1), 2.0)
    noise = ndi.gaussian_filter(rng.random((h, w)), 3) * rng.random((h, w))
    soft = np.clip(soft / soft.max() + 0.15 * noise, 0, 1)
    return (soft * 255).astype(np.uint8), gt
