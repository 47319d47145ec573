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


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models: they gain nothing from more, and on a shared 2-core machine
    OpenMP's spin-waiting slows them several times. A module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
