"""The foreground-only thinning equals skimage's ``thin`` (the reference MATLAB bwmorph port)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import thin as skimage_thin

from mtbench.metrics.boundary_thin import thin


@pytest.mark.parametrize("seed", range(4))
def test_thin_equals_skimage_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w = rng.integers(1, 70, 2)
        m = ndi.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 3)) > rng.uniform(0.2, 0.65)
        np.testing.assert_array_equal(thin(m), skimage_thin(m))


def test_thin_equals_skimage_on_solid_and_empty_maps():
    for m in (np.ones((37, 53), bool), np.zeros((5, 9), bool), np.eye(12, dtype=bool) | np.eye(12, k=1, dtype=bool)):
        np.testing.assert_array_equal(thin(m), skimage_thin(m))
