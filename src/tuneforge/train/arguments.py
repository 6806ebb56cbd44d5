"""RunConfig -> transformers.TrainingArguments (names as transformers 5.x has them)."""

from __future__ import annotations

from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.model.load import Precision


def training_arguments(cfg: RunConfig, precision: Precision, *, has_eval: bool) -> Any:
    from transformers import TrainingArguments

    t = cfg.train
    warmup: float | int = t.warmup_steps if t.warmup_steps < 1 else int(t.warmup_steps)
    kwargs: dict[str, Any] = dict(
        output_dir=t.output_dir, do_train=t.do_train, do_eval=t.do_eval or has_eval,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, learning_rate=t.learning_rate,
        num_train_epochs=t.num_train_epochs, max_steps=t.max_steps, lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=warmup, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
        bf16=precision.bf16, fp16=precision.fp16, logging_steps=t.logging_steps, save_strategy=t.save_strategy,
        save_steps=t.save_steps, save_total_limit=t.save_total_limit,
        eval_strategy=t.eval_strategy if has_eval else "no", eval_steps=t.eval_steps, seed=t.seed,
        report_to=t.report_to, use_cpu=t.use_cpu or precision.device == "cpu",
        remove_unused_columns=False, include_num_input_tokens_seen="non_padding",
        logging_first_step=True,
    )
    if t.gradient_checkpointing or not cfg.model.disable_gradient_checkpointing:
        # transformers 5.x renamed gradient_checkpointing to activation_checkpointing
        kwargs["activation_checkpointing"] = True
        kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    kwargs.update(t.extra)
    try:
        return TrainingArguments(**kwargs)
    except (ValueError, TypeError) as exc:
        where = f"{cfg.source}: " if cfg.source else ""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{where}training arguments rejected by transformers: {first}") from None
