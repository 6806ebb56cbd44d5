"""Test-only hooks, read from the environment here and nowhere else. Real runs never set them.

The crash tests (tests/reliability/) and bench/kill_resume.py start `tuneforge train` as a
subprocess and kill it at chosen moments; on the tiny model a save takes milliseconds and a step
less than that, so a kill could never be aimed. These variables stretch those moments:

- TUNEFORGE_TEST_SAVE_DELAY=<seconds>: each checkpoint save pauses this long twice, once after the
  model files are written (optimizer not yet) and once before the completion manifest, so a kill
  lands inside a save with some of its files on disk;
- TUNEFORGE_TEST_STEP_DELAY=<seconds>: each optimizer step lasts at least this long;
- TUNEFORGE_TEST_SAVE_FAIL=<ERRNO>[:<step>]: saves of checkpoints at or after <step> (all, without it)
  fail with that OSError (e.g. ENOSPC, a disk filling up) after the model files are written.
"""

from __future__ import annotations

import errno
import os
import time


def _seconds(name: str) -> float:
    try:
        return max(float(os.environ.get(name, "0") or 0), 0.0)
    except ValueError:
        return 0.0


def pause_in_save() -> None:
    seconds = _seconds("TUNEFORGE_TEST_SAVE_DELAY")
    if seconds:
        time.sleep(seconds)


def pause_in_step() -> None:
    seconds = _seconds("TUNEFORGE_TEST_STEP_DELAY")
    if seconds:
        time.sleep(seconds)


def fail_save(step: int) -> None:
    """Raise the OSError TUNEFORGE_TEST_SAVE_FAIL asks for, when it applies to a save at `step`."""
    spec = os.environ.get("TUNEFORGE_TEST_SAVE_FAIL", "")
    if not spec:
        return
    name, _, first = spec.partition(":")
    code = getattr(errno, name.strip().upper(), errno.EIO)
    if step >= int(first or 0):
        raise OSError(code, os.strerror(code))
