"""A tiny multi-task model without BatchNorm for the weighting tests: a trunk (``backbone``), a cross-task part
two tasks share (``mixer``: semseg and depth), and one head per task. Its gradient does not depend on how the
batch is split, so data-parallel runs can be compared with one process exactly."""
import torch.nn as nn
import torch.nn.functional as F

from mtbench.registry import METHODS, register_method

MIXED = ("semseg", "depth")


class TinyMTL(nn.Module):
    def __init__(self, task_channels):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1))
        self.mixer = nn.Conv2d(6, 6, 1)
        self.heads = nn.ModuleDict({t: nn.Conv2d(6, c, 1) for t, c in task_channels.items()})

    def forward(self, x):
        f = F.relu(self.backbone(x))
        m = F.relu(self.mixer(f))
        return {"final": {t: h(m if t in MIXED else f) for t, h in self.heads.items()}, "aux": {}}


if "_test_wmtl" not in METHODS._entries:
    register_method("_test_wmtl")(lambda task_channels, backbone, cfg: TinyMTL(task_channels))
