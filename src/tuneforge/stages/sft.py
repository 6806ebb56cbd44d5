"""Supervised fine-tuning: prompt tokens masked, answers trained (labels built in data/encode/supervised.py).

Batches are padding-free rows (or packed rows) unless the config asks for padding; the loss is the
chunked one when the model allows it (model/kernels.py decides, train/trainer.py applies).
"""

from __future__ import annotations

from tuneforge.data.collate import PaddingFreeCollator, padded_collator
from tuneforge.stages import StageContext, StageDef, StageResult
from tuneforge.stages.run import run_trainer
from tuneforge.train.trainer import CausalLMTrainer


def run(ctx: StageContext) -> StageResult:
    fast = ctx.fast
    if fast.padding_free:
        collator = PaddingFreeCollator()
    else:
        collator = padded_collator(ctx.tokenizer, ctx.precision.device)
    return run_trainer(ctx.args, ctx.model, ctx.tokenizer, ctx.data, collator, ctx.resume,
                       trainer_class=CausalLMTrainer, fused_loss=fast.fused_loss)


STAGE = StageDef("sft", run)
