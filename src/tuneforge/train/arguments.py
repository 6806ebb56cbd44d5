"""RunConfig -> transformers.TrainingArguments (names as transformers 5.x has them)."""

from __future__ import annotations

from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.config.stages import facts
from tuneforge.model.kernels import FastPath
from tuneforge.model.load import Precision
from tuneforge.train.optimizers import optimizer_arguments


def checkpointing_field() -> str:
    """transformers renamed gradient_checkpointing to activation_checkpointing in 5.2x (5.17 has the old name)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def checkpointing_on(args: Any) -> bool:
    return bool(getattr(args, "activation_checkpointing", False) or getattr(args, "gradient_checkpointing", False))


def wants_checkpointing(cfg: RunConfig) -> bool | None:
    """True/False when the config decides; None when it is ours to decide from the memory estimate."""
    if cfg.train.gradient_checkpointing or cfg.model.use_unsloth_gc or cfg.model.disable_gradient_checkpointing is False:
        return True
    return False if cfg.model.disable_gradient_checkpointing else None


def training_arguments(cfg: RunConfig, precision: Precision, *, has_eval: bool, fast: FastPath | None = None,
                       checkpointing: bool | None = None) -> Any:
    """`fast` (model/kernels.py) says how batches are built; `checkpointing` is the decision for the
    auto case (None: the config's own setting, off when it has none)."""
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
        remove_unused_columns=False, logging_first_step=True,
        # padding-free rows hold no padding: every token counts (and pad == eos would undercount)
        include_num_input_tokens_seen="all" if fast and fast.padding_free else "non_padding",
    )
    if fast and fast.liger:
        kwargs["use_liger_kernel"] = True
    if facts(cfg.method.stage).padding_free:
        # eval reports eval_loss only: gathering every eval batch's [tokens, vocab] logits on the GPU
        # (Trainer's default) is how a large eval set runs out of memory
        kwargs["prediction_loss_only"] = True
    if cfg.data.streaming:
        # accelerate's default for an IterableDataset fetches batches on one process and slices them along
        # dim 0 for each: that cuts the padding-free batch's sample boundaries (cu_seq_lens) apart
        kwargs["accelerator_config"] = {"dispatch_batches": False}
    if precision.device == "cuda":  # collate in worker processes, copy from pinned memory
        kwargs.update(dataloader_num_workers=2, dataloader_persistent_workers=True, dataloader_pin_memory=True)
    decided = wants_checkpointing(cfg)
    if decided if decided is not None else bool(checkpointing):
        name = checkpointing_field()
        kwargs[name] = True
        kwargs[name + "_kwargs"] = {"use_reentrant": False}
    kwargs.update(optimizer_arguments(cfg.method))  # GaLore / APOLLO: transformers' own optimizers
    kwargs.update(distributed_arguments(cfg, precision.device))
    kwargs.update(t.extra)
    try:
        return TrainingArguments(**kwargs)
    except (ValueError, TypeError) as exc:
        where = f"{cfg.source}: " if cfg.source else ""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{where}training arguments rejected by transformers: {first}") from None


def distributed_arguments(cfg: RunConfig, device: str) -> dict[str, Any]:
    """deepspeed / fsdp / fsdp_config as the Trainer takes them (the Trainer fills DeepSpeed's "auto" values
    from the other arguments), and the defaults a multi-process run needs."""
    import copy

    from tuneforge.config.distributed import read_json_setting
    from tuneforge.log import world_size

    d, where = cfg.dist, cfg.source or "config"
    out: dict[str, Any] = {}
    if d.deepspeed is not None:  # a copy: the Trainer writes the filled-in values into the mapping it gets
        out["deepspeed"] = copy.deepcopy(read_json_setting(d.deepspeed, "deepspeed", where))
    if d.fsdp:
        out["fsdp"] = d.fsdp
        if d.fsdp_config is not None:
            out["fsdp_config"] = copy.deepcopy(read_json_setting(d.fsdp_config, "fsdp_config", where))
    if world_size() > 1 and "ddp_find_unused_parameters" not in cfg.train.extra:
        # DDP's search for unused weights costs a pass over the graph every step and warns on every rank; the
        # methods here use every trainable weight in each forward (set it true for a model that does not)
        out["ddp_find_unused_parameters"] = False
    return out
