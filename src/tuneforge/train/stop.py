"""Stopping a training run on SIGTERM or SIGINT (Ctrl-C) without losing it.

- Before training starts (loading, encoding data) a signal ends the run at once: `Interrupted` is
  raised, the CLI prints one line and exits 130 (SIGINT) or 143 (SIGTERM). No checkpoint exists yet
  to be cut short, and the run's own files are write-then-rename.
- During training the first signal is only recorded; the step under way finishes, a checkpoint of it
  is saved (atomically, train/checkpoints.py), logs and plots are written, and the run ends with
  `TrainingStopped`: the CLI prints how to resume and exits EXIT_STOPPED (75, EX_TEMPFAIL). The web
  UI's Stop button sends SIGTERM to the run's process group and relies on exactly this.
- A second signal aborts at once without saving: one line, exit 130 / 143.

Why not transformers' own `enable_jit_checkpoint`: it handles SIGTERM only, waits a fixed 3 s, and
saves from `on_pre_optimizer_step`, i.e. between the micro-batches of a step, which a resumed run
cannot continue exactly; it neither stops on SIGINT nor tells the caller that it stopped.

Signal handlers belong to the process, so the catcher installed by `catching()` is process state too;
`active()` is how the training loops (train/callbacks.py:StopCallback, the ppo stage) find it. This module
imports nothing heavy: the CLI reads its exceptions on every run.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

EXIT_STOPPED = 75  # sysexits.h EX_TEMPFAIL: stopped on request, state saved, run it again to continue
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    return 128 + int(signum)  # 130 for SIGINT, 143 for SIGTERM, as a shell reports a signal death


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Interrupted(BaseException):
    """A signal ended the run outside training. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way swallows it; unlike KeyboardInterrupt, typer does not turn it into
    a silent exit."""

    def __init__(self, signum: int, when: str):
        super().__init__(f"stopped by {signal_name(signum)} {when}")
        self.signum = signum
        self.code = exit_code(signum)


@dataclass(eq=False)
class TrainingStopped(Exception):
    """Training ended early on a signal, its last step saved."""

    signum: int
    step: int
    max_steps: int
    checkpoint: str
    log_history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False  # the signal came during the last step: the run is complete

    def line(self, resume_command: str) -> str:
        name = signal_name(self.signum)
        if self.finished:
            return f"stopped by {name} after the last step ({self.step} of {self.max_steps}); training is complete"
        return (f"stopped at step {self.step} of {self.max_steps} by {name}; saved {self.checkpoint}; "
                f"resume with: {resume_command}")


class StopSignals:
    """Receives SIGINT/SIGTERM for one run. `deferring` is on while a step may be under way."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.deferring = False
        self.when = "before training started; nothing was saved"
        self.pid = os.getpid()
        self._previous: dict[int, Any] = {}

    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False  # only the main thread may set handlers (e.g. a run inside a web server's worker)
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:
            return  # a forked DataLoader worker inherited this handler: its parent decides
        if self.received is not None:
            # os.write: a plain write to fd 2 cannot collide with a print under way in the interrupted code
            os.write(2, f"\ntuneforge: second {signal_name(signum)}: aborting now without saving\n".encode())
            os._exit(exit_code(signum))
        if not self.deferring:
            raise Interrupted(signum, self.when)
        self.received = signum
        if os.environ.get("RANK", "0") == "0":  # every rank of a multi-process run gets the signal: rank 0 says it
            os.write(2, f"\ntuneforge: {signal_name(signum)} received: saving a checkpoint when this step ends "
                        "(send it again to abort at once)\n".encode())


_ACTIVE: list[StopSignals] = []


def active() -> StopSignals | None:
    """The catcher of the run in progress (None outside `catching()`, e.g. a library call)."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextmanager
def catching() -> Iterator[StopSignals]:
    """Handle SIGINT/SIGTERM as this module describes for the duration of the block."""
    stops = StopSignals()
    installed = stops.install()
    _ACTIVE.append(stops)
    try:
        yield stops
    finally:
        _ACTIVE.remove(stops)
        if installed:
            stops.restore()


@contextmanager
def training(when_done: str) -> Iterator[StopSignals | None]:
    """Around a training loop and its final writes: signals are recorded, not raised; after the block a
    signal ends the run at once again (`when_done` says what is saved by then)."""
    stops = active()
    if stops is None:
        yield None
        return
    stops.deferring = True
    try:
        yield stops
    finally:
        stops.deferring = False
        stops.when = when_done

