import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Grids in tests skip the end-of-grid report (figures cost seconds per grid); tests/test_report*.py build it.
os.environ.setdefault("MTBENCH_NO_REPORT", "1")

import pytest  # noqa: E402

from mtbench.config import load_recipe  # noqa: E402

TINY = [
    "iterations=6", "batch_size=2", "checkpoint_every=2", "num_workers=0",
    "datasets.synthetic.n_train=6", "datasets.synthetic.n_val=3",
    "datasets.synthetic.height=32", "datasets.synthetic.width=48",
    "eval.edge_thresholds=5", "eval.edge_workers=1",
    "methods.baseline.head_channels=16", "methods.single.head_channels=16",
]


@pytest.fixture
def tiny_overrides():
    return list(TINY)


@pytest.fixture
def tiny_recipe():
    return load_recipe("smoke", TINY)
