"""Supervised fine-tuning: prompt tokens masked, answers trained (labels built in data/encode/supervised.py).

Batches are padding-free rows (or packed rows) unless the config asks for padding; the loss is the
chunked one when the model allows it (model/kernels.py decides; attached to the model's forward here).
"""

from __future__ import annotations

from tuneforge.data.collate import PaddingFreeCollator, VisionRowCollator, padded_collator
from tuneforge.data.encode.multimodal import vision_collator
from tuneforge.model.fused_loss import attach_chunked_loss
from tuneforge.model.mrope import rope_index
from tuneforge.stages import StageContext, StageDef, StageResult
from tuneforge.stages.run import run_trainer
from tuneforge.train.trainer import CausalLMTrainer


def run(ctx: StageContext) -> StageResult:
    fast = ctx.fast
    if ctx.template.images is not None:  # pictures in the batch: their pixel inputs, positions per sample
        collator = vision_collator(ctx.template, padded_collator(ctx.tokenizer, ctx.precision.device))
        if fast.padding_free:
            collator = VisionRowCollator(collator, rope_index(ctx.model))
    elif fast.padding_free:
        collator = PaddingFreeCollator()
    else:
        collator = padded_collator(ctx.tokenizer, ctx.precision.device)
    if fast.fused_loss:
        attach_chunked_loss(ctx.model)
    result = run_trainer(ctx.args, ctx.model, ctx.tokenizer, ctx.data, collator, ctx.resume,
                         trainer_class=CausalLMTrainer)
    if ctx.template.images is not None:  # the trained folder loads like the base model: with its image processor
        ctx.template.images.processor.save_pretrained(ctx.args.output_dir)
    return result


STAGE = StageDef("sft", run)
