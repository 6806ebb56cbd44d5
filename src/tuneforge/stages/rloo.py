"""RLOO (REINFORCE leave-one-out): trl's RLOOTrainer, rewards from the rm stage's reward model and/or
Python reward functions. Each prompt gets num_generations sampled answers; an answer's baseline is the
mean reward of the other answers to the same prompt, and pref_beta folds the KL to the reference into
the reward (0: no reference pass). See online_common.py."""

from __future__ import annotations

from tuneforge.stages import StageContext, StageDef, StageResult
from tuneforge.stages.online_common import check, run_online


def run(ctx: StageContext) -> StageResult:
    from trl import RLOOConfig, RLOOTrainer

    return run_online(ctx, RLOOTrainer, RLOOConfig)


STAGE = StageDef("rloo", run, checks=check)
