"""Every stage `tuneforge train` can run, by the name the config's `stage` key gives.

A stage's module is imported when that stage is asked for, not all of them up front: the preference and
online stages import trl (about 0.5 s of every start on a CPU), which an sft or pt run never uses.
"""

from __future__ import annotations

import importlib

from tuneforge.stages import Stage

NAMES = ("sft", "pt", "rm", "dpo", "kto", "ppo", "grpo", "rloo")  # each is tuneforge.stages.<name>, ending in STAGE


def get_stage(name: str) -> Stage:
    """The config's Literal already limits `stage` to these names (tests/stages/test_registry.py)."""
    if name not in NAMES:
        raise KeyError(name)
    return importlib.import_module(f"tuneforge.stages.{name}").STAGE


def all_stages() -> dict[str, Stage]:
    return {name: get_stage(name) for name in NAMES}
