"""Supervised fine-tuning: prompt tokens masked, answers trained (labels built in data/encode/supervised.py)."""

from __future__ import annotations

from tuneforge.stages import StageContext
from tuneforge.stages.common import StageResult, padded_collator, run_trainer


def run(ctx: StageContext) -> StageResult:
    collator = padded_collator(ctx.tokenizer, ctx.precision)
    return run_trainer(ctx.args, ctx.model, ctx.tokenizer, ctx.data, collator, ctx.resume)
