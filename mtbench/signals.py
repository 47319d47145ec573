"""Stopping a training run without losing it: a signal that arrives during a training step is held until the step
ends; the engine's ``on_iteration`` hook then saves a checkpoint and hands the signal over. At most one step is
lost instead of up to ``checkpoint_every``.

One mechanism for both executors:
- SLURM (``slurm_launch.RunJob``): submitit's requeue signal; handing over = submitit's handler (requeue, exit).
  If no step ends within ``grace_s`` the handler runs anyway (the job would be killed otherwise).
- local: SIGINT (Ctrl-C), SIGTERM, SIGUSR1; handing over = raising :class:`Interrupted`, whose message says what
  was saved and that re-running the same command resumes. A second Ctrl-C stops at once.

Outside training (setup, the final evaluation) a signal is handed over at once: nothing is lost (the end of
training is always checkpointed before the final evaluation). With several processes a signal seen by any rank
is shared with all (one tiny all-reduce per step), because saving is collective.
"""
from __future__ import annotations

import signal
from typing import Any, Callable

Handover = Callable[[int, Any, "int | None"], None]


class Interrupted(KeyboardInterrupt):
    """A local run stopped by a signal; the message says what was saved. ``signum`` gives the exit code."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.message, self.signum = message, signum

    def __str__(self) -> str:
        return self.message


def name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class DeferredSignals:
    """Install with ``with DeferredSignals(...) as guard:`` (main thread), pass ``guard.on_iteration`` to the engine.

    ``handover(signum, frame, saved_at)`` is called once the signal may act: ``saved_at`` is the iteration just
    checkpointed, or None outside training.
    """

    def __init__(self, signums: tuple[int, ...], handover: Handover, total: int, *, grace_s: float | None = None,
                 log: Callable[[str], None] = print, world: int = 1, flag_device: Any = None,
                 immediate_on_repeat: tuple[int, ...] = ()):
        self.signums, self.handover, self.total, self.grace_s, self.log = signums, handover, total, grace_s, log
        self.world, self.flag_device, self.immediate_on_repeat = world, flag_device, immediate_on_repeat
        self.phase, self.pending, self.it = "setup", None, 0
        self._previous: dict[int, Any] = {}

    # --- installing --------------------------------------------------------------------------------------------
    def __enter__(self) -> "DeferredSignals":
        for s in self.signums:
            self._previous[s] = signal.signal(s, self._on_signal)
        if self.grace_s:
            self._previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.grace_s:
            signal.alarm(0)
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    # --- the handlers ------------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.phase != "train":
            self.log(f"{name(signum)} during {self.phase}: stopping now")
            self.handover(signum, frame, None)
        elif self.pending is None:
            self.log(f"{name(signum)} during iteration {self.it + 1}: saving a checkpoint after it"
                     + (" (press Ctrl-C again to stop at once)" if signum in self.immediate_on_repeat else ""))
            self.pending = signum
            if self.grace_s:
                signal.alarm(max(1, int(self.grace_s)))
        elif signum in self.immediate_on_repeat:
            self.log(f"second {name(signum)}: stopping at once, without saving iteration {self.it + 1}")
            self.handover(signum, frame, None)

    def _on_alarm(self, signum: int, frame: Any) -> None:
        self.log(f"no step ended within {self.grace_s:.0f} s: stopping; the run resumes from its last checkpoint")
        self.handover(self.pending, frame, None)

    def _agree(self) -> None:
        """Every rank must save at the same step: a signal seen by one is shared with all."""
        import torch
        import torch.distributed as dist

        flag = torch.tensor([0.0 if self.pending is None else 1.0], device=self.flag_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.pending is None:
            self.pending = self.signums[0]

    # --- the engine's hook -------------------------------------------------------------------------------------
    def on_iteration(self, it: int, save: Callable[[], None]) -> None:
        self.it = it
        if self.world > 1:
            self._agree()
        if self.pending is not None and self.grace_s:
            signal.alarm(0)
        if self.pending is not None:  # (the engine itself saves the end of training: a signal during the final
            save()  # evaluation then loses no training)
            self.log(f"checkpoint saved at iteration {it}/{self.total}")
            self.handover(self.pending, None, it)
        self.phase = "train" if it < self.total else "evaluate"
