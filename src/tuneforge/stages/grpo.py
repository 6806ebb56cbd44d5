"""GRPO (group relative policy optimization): trl's GRPOTrainer, rewards from the rm stage's reward model
and/or Python reward functions. Each prompt gets num_generations sampled answers; an answer's advantage
is its reward relative to its group's mean (scaled by the group's spread), so no value model is trained.
pref_beta weighs the KL penalty to the reference (0: no reference pass). See online_common.py."""

from __future__ import annotations

from tuneforge.stages import StageContext, StageDef, StageResult
from tuneforge.stages.online_common import check, run_online


def run(ctx: StageContext) -> StageResult:
    from trl import GRPOConfig, GRPOTrainer

    return run_online(ctx, GRPOTrainer, GRPOConfig)


STAGE = StageDef("grpo", run, checks=check)
