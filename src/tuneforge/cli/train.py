"""`tuneforge train CONFIG [key=value ...]`: config -> data -> model -> stage -> outputs.

Everything a user can get wrong (config, output folder, tokenizer, template, every record)
is checked before model weights load, so mistakes surface in seconds, not after GPU start-up.
"""

from __future__ import annotations

from pathlib import Path

from tuneforge.log import note


def run_train(config_path: Path, overrides: list[str]) -> None:
    from transformers import set_seed

    from tuneforge.config.load import load
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.packing import pack_dataset
    from tuneforge.data.templates import template_for
    from tuneforge.data.templates.check import compare_with_tokenizer
    from tuneforge.evaluate.predict import maybe_predict
    from tuneforge.model import kernels
    from tuneforge.model.adapters import apply_method, count_parameters
    from tuneforge.model.load import choose_precision, load_model, load_tokenizer
    from tuneforge.model.memory.settings import decide_checkpointing, worst_micro_batch
    from tuneforge.stages import StageContext, stage_module
    from tuneforge.train.arguments import training_arguments, wants_checkpointing
    from tuneforge.train.outputs import (
        check_output_dir,
        clear_previous_run,
        write_run_config,
    )
    from tuneforge.train.plot import plot_losses

    cfg, notes = load(config_path, overrides)
    for text in notes:
        note(text)
    if not cfg.train.do_train:  # LLaMA-Factory predicts through `train` with do_train: false
        return maybe_predict(cfg, log=note)
    runner = stage_module(cfg.method.stage)
    if hasattr(runner, "check"):  # stage settings that need no weights: fail before anything loads
        runner.check(cfg)
    resume = check_output_dir(cfg)
    precision = choose_precision(cfg.train, cfg.method.finetuning_type)
    if precision.note:
        note(precision.note)
    fast = kernels.plan(cfg, precision.device)
    for text in fast.notes:
        note(text)
    if cfg.model.use_unsloth:
        note("use_unsloth: unsloth is not used; tuneforge's own fast path (padding-free, fused loss) is on")
    has_eval = bool(cfg.data.val_size or cfg.data.eval_dataset)
    args = training_arguments(cfg, precision, has_eval=has_eval, fast=fast)  # checked before anything loads

    tokenizer = load_tokenizer(cfg.model)
    stage = cfg.method.stage
    template = template_for(cfg.data, tokenizer)
    if stage == "sft":
        mismatch = compare_with_tokenizer(template)
        if mismatch:
            note(mismatch)
    data = build_datasets(cfg.data, template, stage, seed=cfg.train.seed,
                          need_eval=cfg.train.eval_strategy != "no")
    counts = ", ".join(f"{k}: {v}" for k, v in data.report.counts.items())
    note(f"data: {len(data.train)} training samples ({counts})"
         + (f", {len(data.eval)} eval" if data.eval is not None else "")
         + (" [cached]" if data.from_cache else ""))
    if data.report.skipped:
        note(f"skipped {len(data.report.skipped)} bad records (bad_records: skip); first: {data.report.skipped[0]}")
    if data.dropped:
        note(f"dropped {data.dropped} samples with no trained token left within cutoff_len {cfg.data.cutoff_len}")
    if fast.packing:
        samples = len(data.train)
        data.train = pack_dataset(data.train, cfg.data.cutoff_len)
        data.eval = pack_dataset(data.eval, cfg.data.cutoff_len) if data.eval is not None else None
        note(f"packing: {samples} samples -> {len(data.train)} rows of at most {cfg.data.cutoff_len} tokens")
    if precision.device == "cuda" and wants_checkpointing(cfg) is None and stage in kernels.PADDING_FREE_STAGES:
        # sized on the largest micro-batch this data can form, not batch x cutoff_len
        tokens = worst_micro_batch([len(ids) for ids in data.train["input_ids"]],
                                   cfg.train.per_device_train_batch_size, fast.padding_free)
        checkpointing, reason = decide_checkpointing(cfg, tokens)
        note(f"gradient checkpointing {reason}, largest micro-batch {tokens:,} tokens")
        if checkpointing:
            args = training_arguments(cfg, precision, has_eval=has_eval, fast=fast, checkpointing=True)

    set_seed(cfg.train.seed)  # adapter init (LoRA A, value heads) must repeat run to run, as the data order does
    if hasattr(runner, "build_model"):  # e.g. rm: a causal LM with a value head
        model = runner.build_model(cfg, precision)
    else:
        model = apply_method(load_model(cfg.model, precision, attn_implementation=fast.attn_implementation),
                             cfg.method, cfg.model)
    kernels.settle_loss(fast, cfg, model)
    trainable, total = count_parameters(model)
    note(f"{cfg.method.finetuning_type} on {cfg.model.model_name_or_path}: trainable {trainable:,} of {total:,} "
         f"parameters ({100 * trainable / total:.4f}%), device {precision.device}, "
         f"{'bf16' if precision.bf16 else 'fp16' if precision.fp16 else 'fp32'}")

    if cfg.train.overwrite_output_dir and not resume:
        clear_previous_run(cfg.train.output_dir)
    write_run_config(cfg, cfg.train.output_dir)
    if stage in kernels.PADDING_FREE_STAGES:
        note(f"fast path: {fast.describe()}")
    ctx = StageContext(cfg=cfg, args=args, model=model, tokenizer=tokenizer, template=template, data=data,
                       precision=precision, resume=resume, fast=fast)
    result = runner.run(ctx)
    if cfg.method.plot_loss:
        for path in plot_losses(result.log_history, cfg.train.output_dir, keys=result.plot_keys):
            note(f"wrote {path}")
    losses = [e["loss"] for e in result.log_history if "loss" in e]
    summary = f"done in {result.metrics.get('train_runtime', 0):.1f}s"
    if losses:
        summary += f", loss {losses[0]:.4f} -> {losses[-1]:.4f}"
    if result.eval_metrics and "eval_loss" in result.eval_metrics:
        summary += f", eval_loss {result.eval_metrics['eval_loss']:.4f}"
    note(f"{summary}; saved to {cfg.train.output_dir}")
    maybe_predict(cfg, log=note)
