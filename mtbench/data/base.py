"""The dataset contract shared by synthetic and real datasets.

A dataset yields ``{"image": float (3,H,W) normalised, <task>: target, "meta": {...}}``.
Targets (ignore value 255 for labels everywhere):
  semseg, human_parts: int64 (H,W), class ids, 255 = ignore
  depth:   float32 (H,W), metres, 0 = invalid
  normals: float32 (3,H,W), unit vectors in the dataset's camera frame with x pointing right
           (a horizontal flip negates x; synthetic scenes use x right, y up, z towards the
           camera), invalid pixels = 255 in all three channels
  edge:    float32 (H,W), 0/1, 255 = ignore
  sal:     int64 (H,W), 0/1, 255 = ignore
meta: {"id": str, "size": (h, w), "offset": (top, left)}: the native size before padding and
where the native image sits in the padded tensor (default (0, 0)); evaluation crops it back.

``__getitem__`` takes an int (evaluation) or ``(index, sample_seed)`` (training): random
augmentation must be drawn from ``sample_seed`` only, so that a resumed run is bit-identical.
A builder ``build(split, tasks, cfg)`` is registered with ``register_dataset`` and carries
``default_tasks`` and ``static_info(tasks, cfg) -> DatasetInfo`` (no file access: for profiling).
"""
from __future__ import annotations

from dataclasses import dataclass, field

IGNORE = 255

# ImageNet statistics: every backbone here is an ImageNet-style one.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The task sets of the two real benchmarks; synthetic scenes can render either.
TASK_SETS = {
    "nyud": ("semseg", "depth", "normals", "edge"),
    "pascal": ("semseg", "human_parts", "sal", "normals", "edge"),
}


@dataclass(frozen=True)
class DatasetInfo:
    """What tasks and evaluators need to know about a dataset, independent of its split."""

    name: str
    tasks: tuple[str, ...]
    num_classes: dict[str, int] = field(default_factory=dict)  # semseg / human_parts
    class_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    edge_max_dist: float = 0.011  # BSDS maxDist as a fraction of the image diagonal
    image_size: tuple[int, int] = (0, 0)  # (H, W) the model sees: the padded size (= native if no padding)
    loss_weight_profile: str = "nyud"  # which per-dataset loss weights apply
    # Δm convention of the setting: "primary" (one primary metric per task) or "all" (every metric the tasks
    # declare in ``delta_metrics``, the convention of the MTAN / LibMTL / Nash-MTL tables); see leaderboard.py
    delta_m: str = "primary"


def parse_tasks(spec: str | tuple[str, ...] | list[str] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """Accept a preset name ('nyud', 'pascal') or a comma list of task names."""
    if spec is None or spec == "" or spec == ():
        return tuple(default)
    if isinstance(spec, str):
        if spec in TASK_SETS:
            return TASK_SETS[spec]
        items = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        items = list(spec)
    if len(set(items)) != len(items):
        raise ValueError(f"duplicate task in '{spec}'")
    return tuple(items)
