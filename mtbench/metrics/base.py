"""The evaluator contract, modelled on torchmetrics' ``Metric``.

State is a set of tensors that hold dataset-level sums on the prediction's device; ``update``
never syncs with the host, so evaluation keeps a GPU busy. ``compute`` turns the pooled sums
into floats. Pooling sums (never averaging per-batch ratios) is what makes a number the same
whatever the batch size or the number of processes.
"""
from __future__ import annotations

import torch


class Evaluator:
    #: metric name -> True where higher is better; every key ``compute`` returns is listed here.
    higher_is_better: dict[str, bool] = {}
    #: metric name -> unit shown in table headers and figure axes ('%', 'm', '°'; '' = none). Every metric an
    #: evaluator returns is on the scale its unit says (percentages as 0–100), in records and on screen alike.
    units: dict[str, str] = {}

    def __init__(self) -> None:
        self._state_names: list[str] = []

    def add_state(self, name: str, default: torch.Tensor) -> None:
        self._state_names.append(name)
        setattr(self, f"_default_{name}", default.clone())
        setattr(self, name, default.clone())

    def reset(self) -> None:
        for name in self._state_names:
            setattr(self, name, getattr(self, f"_default_{name}").clone())

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The summed state, for reduction across processes (sum is always the right op)."""
        return {name: getattr(self, name) for name in self._state_names}

    def _to(self, device: torch.device) -> None:
        for name in self._state_names:
            t = getattr(self, name)
            if t.device != device:
                setattr(self, name, t.to(device))

    def sync(self, device: torch.device | None = None) -> None:
        """Sum the state over all processes (data parallel); a no-op in a single process.

        Always a sum of pooled counts, never an average of per-rank ratios, so N ranks give
        exactly the numbers one process gives on the same images."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        if device is not None:
            self._to(device)  # a rank that saw no image still holds its CPU defaults
        for name in self._state_names:
            dist.all_reduce(getattr(self, name), op=dist.ReduceOp.SUM)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError
