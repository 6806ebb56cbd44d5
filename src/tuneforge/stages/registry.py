"""Every stage `tuneforge train` can run, by the name the config's `stage` key gives."""

from __future__ import annotations

from tuneforge.stages import Stage, dpo, grpo, kto, ppo, pt, rloo, rm, sft

STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    sft.STAGE, pt.STAGE, rm.STAGE, dpo.STAGE, kto.STAGE, ppo.STAGE, grpo.STAGE, rloo.STAGE)}


def get_stage(name: str) -> Stage:
    """The config's Literal already limits `stage` to these names (tests/stages/test_registry.py)."""
    return STAGES[name]
