"""Weights that depend on a tensor's name and shape only, so that a test and a script run against a released
code base outside the project can give the same network the same values under the release's key names."""
import math
import zlib

import torch


def det(key: str, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    x = torch.randn(tuple(shape), generator=g)
    if key.endswith("running_var"):
        return 1 + 0.1 * x.abs()
    if key.endswith("running_mean"):
        return 0.1 * x
    if len(shape) == 1:
        return 1 + 0.1 * x if key.endswith("weight") else 0.1 * x
    if shape[0] == 1:
        return 0.1 * x
    return x * (0.5 / math.sqrt(math.prod(shape[1:])))
