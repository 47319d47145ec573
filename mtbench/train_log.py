"""What a run says while it trains: one JSON line per iteration for the report, progress for people.

- ``train_log.jsonl`` in the run directory: iteration, total and per-task loss, learning rate, step and
  data-wait time (and whatever a weighting strategy adds, e.g. task weights). It survives resume: lines past
  the checkpoint the run restarts from are dropped first, so no iteration appears twice.
- On a terminal a rich bar; where stdout is not a terminal (SLURM, CI, ``> log``) a plain line every
  ``print_every_s`` seconds and at each tenth of the run, and one per evaluation. The same lines always go to
  ``train.log`` in the run directory.
- Losses stay on the device and are read back once per ``sync_every`` steps (one host sync per window, all
  ranks in one all-reduce), which is also where a non-finite loss is caught.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from mtbench.records import atomic_write_text

LOG_NAME, TEXT_LOG_NAME = "train_log.jsonl", "train.log"


class NonFiniteLoss(RuntimeError):
    """Training diverged; the run is recorded as failed rather than producing garbage metrics."""


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def keep_until(path: Path, iteration: int) -> None:
    """Drop the lines of iterations after ``iteration`` (a resumed run trains them again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["iteration"] <= iteration:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            break  # a torn last line from a kill: everything before it is good
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def read_log(path: Path) -> list[dict[str, Any]]:
    """The iterations of a run's ``train_log.jsonl`` (a torn last line is ignored)."""
    rows = []
    if Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
    return rows


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


class TrainLog:
    def __init__(self, run_dir: Path, name: str, total: int, start: int, batch_size: int, *,
                 is_main: bool = True, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 world_size: int = 1, sync_every: int = 10, print_every_s: float = 30.0,
                 plain: bool | None = None, out=None):
        self.run_dir, self.name, self.total, self.start, self.batch = Path(run_dir), name, total, start, batch_size
        self.is_main, self.reduce, self.world = is_main, reduce, world_size
        self.sync_every, self.print_every_s = max(1, sync_every), print_every_s
        self.plain = (not stdout_is_terminal()) if plain is None else plain
        self.out = out or sys.stdout
        self._window: list[tuple[int, dict[str, torch.Tensor], dict[str, float]]] = []
        self._t0 = time.perf_counter()
        self._last_print = -math.inf
        self._next_tenth = start + max(1, total // 10)
        self.last_loss: float | None = None
        self.step_s = self.data_s = 0.0
        self.steps = 0
        if is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            keep_until(self.run_dir / LOG_NAME, start)
            self.say(f"training {'from scratch' if start == 0 else f'resumed at iteration {start}'}, {total} "
                     f"iterations, global batch {batch_size}")

    # --- per step ------------------------------------------------------------------------------------------
    def step(self, iteration: int, losses: dict[str, torch.Tensor], lr: float, step_s: float, data_s: float,
             extra: dict[str, Any] | None = None) -> None:
        """Record iteration ``iteration`` (1-based: optimizer steps done). ``step_s`` is the iteration's wall time,
        ``data_s`` the part of it spent waiting for the batch. No host sync."""
        self._window.append((iteration, {t: v.detach().float() for t, v in losses.items()},
                             {"lr": lr, "step_s": step_s, "data_s": data_s, **(extra or {})}))
        self.step_s += step_s
        self.data_s += data_s
        self.steps += 1
        if len(self._window) >= self.sync_every or iteration == self.total:
            self.flush()

    def flush(self) -> float | None:
        """Read the window's losses back (one sync), check them, write their lines; the last total loss."""
        if not self._window:
            return self.last_loss
        names = list(self._window[0][1])
        values = torch.stack([torch.stack([losses[t] for t in names]) for _, losses, _ in self._window])
        if self.reduce is not None and self.world > 1:
            values = self.reduce(values.clone()) / self.world
        values = values.cpu().double()
        window, self._window = self._window, []
        lines = []
        for (iteration, _, info), row in zip(window, values.tolist()):
            # a weighting strategy's per-task weights: a device tensor until now (read back with the losses)
            info = {k: dict(zip(names, v.tolist())) if isinstance(v, torch.Tensor) else v for k, v in info.items()}
            total = float(sum(row))
            if not all(math.isfinite(v) for v in row):
                bad = ", ".join(f"{t} {v}" for t, v in zip(names, row) if not math.isfinite(v))
                raise NonFiniteLoss(f"loss is not finite at iteration {iteration} ({bad}); lower the learning rate "
                                    f"or set grad_clip in the recipe")
            lines.append(json.dumps({"iteration": iteration, "loss": total, "losses": dict(zip(names, row)), **info}))
            self.last_loss = total
        if self.is_main:
            with open(self.run_dir / LOG_NAME, "a") as f:
                f.write("".join(f"{line}\n" for line in lines))
            self._maybe_print(window[-1][0], dict(zip(names, values[-1].tolist())))
        return self.last_loss

    def _maybe_print(self, iteration: int, losses: dict[str, float]) -> None:
        now = time.perf_counter()
        due = now - self._last_print >= self.print_every_s or iteration >= self._next_tenth or iteration == self.total
        if not due:
            return
        while self._next_tenth <= iteration:
            self._next_tenth += max(1, self.total // 10)
        self._last_print = now
        elapsed = now - self._t0
        done = iteration - self.start
        rate = done / elapsed if elapsed > 0 else float("nan")
        parts = " ".join(f"{t} {v:.4g}" for t, v in losses.items())
        self.say(f"it {iteration}/{self.total} loss {sum(losses.values()):.4g} ({parts}) "
                 f"{rate * self.batch:.1f} img/s ETA {_fmt_eta((self.total - iteration) / rate if rate else math.inf)}")

    # --- events --------------------------------------------------------------------------------------------
    def evaluation(self, iteration: int, metrics: dict[str, dict[str, float]], primary: dict[str, str]) -> None:
        parts = ", ".join(f"{t} {m} {metrics[t][m]:.4g}" for t, m in primary.items() if m in metrics.get(t, {}))
        self.say(f"eval at it {iteration}: {parts}")

    def say(self, message: str) -> None:
        """One line for people: to stdout where no bar is shown, and always to ``train.log``."""
        if not self.is_main:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {self.name}: {message}"
        if self.plain:
            print(line, file=self.out, flush=True)
        with open(self.run_dir / TEXT_LOG_NAME, "a") as f:
            f.write(line + "\n")

    def summary(self) -> dict[str, Any]:
        """For the record: where this process's training time went."""
        return {"iterations_logged": self.steps,
                "mean_step_s": self.step_s / self.steps if self.steps else None,
                "data_wait_fraction": self.data_s / self.step_s if self.step_s > 0 else None,
                "log": LOG_NAME}
