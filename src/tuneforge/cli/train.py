"""`tuneforge train CONFIG [key=value ...]`: setup -> prepare -> build -> fit -> finish.

- setup:   config, the stage's own checks, output folder, precision, fast path (nothing loaded);
- prepare: tokenizer, template, every record encoded (cached), packing, TrainingArguments;
- build:   the model with the fine-tuning method applied, the loss settled for it;
- fit:     the stage trains and saves;
- finish:  plots, the summary line, predictions when asked.

Everything a user can get wrong (config, output folder, tokenizer, template, every record,
training arguments) is checked before model weights load, so mistakes surface in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.schema import RunConfig
from tuneforge.log import note

if TYPE_CHECKING:  # the heavy modules load inside the steps, after the config is read
    from tuneforge.data.dataset import EncodedData
    from tuneforge.data.templates import BoundTemplate
    from tuneforge.model.kernels import FastPath
    from tuneforge.model.load import Precision
    from tuneforge.stages import Stage, StageResult


@dataclass(frozen=True)
class Setup:
    """What is decided before anything loads."""

    cfg: RunConfig
    stage: Stage
    precision: Precision
    fast: FastPath
    resume: str | None  # the checkpoint to continue from


@dataclass(frozen=True)
class Prepared:
    """What is loaded before the weights: tokenizer, template, encoded data, training arguments."""

    tokenizer: Any
    template: BoundTemplate
    data: EncodedData
    args: Any  # transformers.TrainingArguments


def run_train(config_path: str | Path | None, overrides: list[str]) -> None:
    from tuneforge.cli.config import load_config
    from tuneforge.evaluate.predict import maybe_predict
    from tuneforge.train import stop
    from tuneforge.train.outputs import default_output_dir

    cfg = load_config(config_path, overrides)
    if not cfg.train.do_train:  # LLaMA-Factory predicts through `train` with do_train: false
        return maybe_predict(cfg)
    if not cfg.train.output_dir:  # chosen once, here: every rank of a launched run gets the same folder
        cfg.train.output_dir = default_output_dir(cfg.model.model_name_or_path, cfg.method.finetuning_type)
        overrides = [*overrides, f"output_dir={cfg.train.output_dir}"]
        note(f"output_dir is not set: writing to {cfg.train.output_dir}")
    if launched(cfg, config_path, overrides):  # torchrun or Ray ran it as several processes
        return None
    with stop.catching():  # SIGTERM/SIGINT: see train/stop.py
        run = setup(cfg)
        if run is None:  # resuming a run that already reached its last step (setup said so)
            return None
        prepared = prepare(run)
        run, model = build(run)
        try:
            result = fit(run, prepared, model)
        except stop.TrainingStopped as stopped:
            report_stop(run, stopped, resume_command(config_path, overrides))
            raise
        del model, prepared  # the trained weights go before predict: vLLM sizes its cache on the free memory
        release_memory()
        finish(run, result)


def launched(cfg: RunConfig, config_path: str | Path | None, overrides: list[str]) -> bool:
    """True when the run was started as several processes from here (launch/: torchrun on N GPUs or as the
    environment says, Ray with USE_RAY=1) and has ended; a failed rank's line is printed, its exit code kept."""
    import sys

    from tuneforge.launch.entry import launch_elsewhere

    argv = ["train", *([str(config_path)] if config_path else []), *overrides]
    outcome = launch_elsewhere(cfg, argv, run_train, config_path, overrides)
    if outcome is None:
        return False
    if outcome.message:
        print(f"error: {outcome.message}", file=sys.stderr)
    if outcome.code:
        raise SystemExit(outcome.code)
    return True


def resume_command(config_path: str | Path | None, overrides: list[str]) -> str:
    """The command line that continues this run: the same config and overrides, resuming."""
    import shlex

    from tuneforge.cli.flags import split_config

    path, overrides = split_config(config_path, overrides)
    kept = [o for o in overrides if o.partition("=")[0].strip() != "resume_from_checkpoint"]
    return shlex.join(["tuneforge", "train", *([str(path)] if path else []), *kept, "resume_from_checkpoint=true"])


def report_stop(run: Setup, stopped: Any, command: str) -> None:
    """A run stopped by a signal: its loss plots, then the one line saying where it stopped."""
    from tuneforge.train.plot import plot_losses

    from tuneforge.log import process_rank

    if run.cfg.method.plot_loss and process_rank() == 0:
        plot_losses(stopped.log_history, run.cfg.train.output_dir)
    note(stopped.line(command))


def release_memory() -> None:
    """Collect what the finished trainer left (its cycles hold the model) and hand the allocator's
    cached blocks back to the device."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def setup(cfg: RunConfig) -> Setup | None:
    """None when resuming a run that already reached its last step (a note says so; nothing changes)."""
    import os

    from tuneforge.launch.entry import engine_notes
    from tuneforge.model import kernels
    from tuneforge.model.load import check_quantization, choose_precision, load_model_config
    from tuneforge.stages.registry import get_stage
    from tuneforge.train.disk import check_disk
    from tuneforge.train.outputs import check_output_dir
    from tuneforge.train.resume import finished

    # padding-free batches differ in length every step: growable segments instead of a new block
    # per size keep fragmentation down (read when CUDA first allocates; a user's setting stays)
    if "PYTORCH_ALLOC_CONF" not in os.environ:
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

    stage = get_stage(cfg.method.stage)
    stage.check(cfg)  # stage settings that need no weights: fail before anything loads
    resume = check_output_dir(cfg)
    if resume and (done := finished(resume, cfg.train)):
        note(done)
        return None
    precision = choose_precision(cfg.train, cfg.method.finetuning_type)
    check_quantization(cfg.model)  # quantization_bit's package installed: one line before anything loads
    model_config = load_model_config(cfg.model)
    check_disk(cfg, model_config, precision.load_dtype)  # writable, room for a checkpoint
    if precision.note:
        note(precision.note)
    for text in engine_notes(cfg, precision.device):  # e.g. fsdp on a CPU is plain data parallel
        note(text)
    fast = kernels.plan(cfg, precision.device, model_config)
    for text in fast.notes:
        note(text)
    if cfg.model.use_unsloth:
        note("use_unsloth: unsloth is not used; tuneforge's own fast path (padding-free, fused loss) is on")
    return Setup(cfg, stage, precision, fast, resume)


def prepare(run: Setup) -> Prepared:
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.templates import template_for
    from tuneforge.data.templates.check import compare_with_tokenizer
    from tuneforge.launch.entry import one_rank_at_a_time
    from tuneforge.model.load import load_tokenizer
    from tuneforge.model.vision import vision_data
    from tuneforge.train.arguments import training_arguments

    cfg = run.cfg
    tokenizer = load_tokenizer(cfg.model)
    image_processor, data_cfg = vision_data(cfg.model, cfg.data)  # a vision model: its processor and template
    template = template_for(data_cfg, tokenizer, image_processor)
    if cfg.method.stage == "sft":
        mismatch = compare_with_tokenizer(template)
        if mismatch:
            note(mismatch)
    with one_rank_at_a_time(cfg.train.output_dir):  # the other ranks read what the first one cached
        data = build_datasets(cfg.data, template, cfg.method.stage, seed=cfg.train.seed,
                              need_eval=cfg.train.eval_strategy != "no")
    _report_data(cfg, data)
    if run.fast.packing:
        data = _pack(cfg, data)
    args = training_arguments(cfg, run.precision, has_eval=bool(cfg.data.val_size or cfg.data.eval_dataset),
                              fast=run.fast, checkpointing=_checkpointing(run, data))
    return Prepared(tokenizer, template, data, args)


def _report_data(cfg: RunConfig, data: EncodedData) -> None:
    counts = ", ".join(f"{k}: {v}" for k, v in data.report.counts.items())
    size = f"{len(data.train)} training samples" if hasattr(data.train, "__len__") else "streamed while training"
    note(f"data: {size} ({counts or ', '.join(cfg.data.dataset or [])})"
         + (f", {len(data.eval) if hasattr(data.eval, '__len__') else int(cfg.data.val_size)} eval"
            if data.eval is not None else "")
         + (" [cached]" if data.from_cache else ""))
    for line in data.report.warnings:
        note(line)
    if data.report.skipped:
        note(f"skipped {len(data.report.skipped)} bad records (bad_records: skip); first: {data.report.skipped[0]}")
    if data.dropped:
        note(f"dropped {data.dropped} samples with no trained token left within cutoff_len {cfg.data.cutoff_len}")


def _pack(cfg: RunConfig, data: EncodedData) -> EncodedData:
    import dataclasses

    from tuneforge.data.packing import pack_dataset

    cutoff = cfg.data.cutoff_len
    packed = dataclasses.replace(data, train=pack_dataset(data.train, cutoff),
                                 eval=pack_dataset(data.eval, cutoff) if data.eval is not None else None)
    note(f"packing: {len(data.train)} samples -> {len(packed.train)} rows of at most {cutoff} tokens")
    return packed


def _checkpointing(run: Setup, data: EncodedData) -> bool | None:
    """On a GPU, when the config leaves it open: sized on the largest micro-batch this data can form,
    not batch x cutoff_len. None leaves it to the config."""
    from tuneforge.config.stages import facts
    from tuneforge.data.packing import sample_lengths
    from tuneforge.model.memory.settings import decide_checkpointing, worst_micro_batch
    from tuneforge.train.arguments import wants_checkpointing

    cfg = run.cfg
    if run.precision.device != "cuda" or wants_checkpointing(cfg) is not None or not facts(cfg.method.stage).padding_free:
        return None
    lengths = sample_lengths(data.train)  # None when streaming: sized on batch x cutoff_len
    tokens = None if lengths is None else worst_micro_batch(lengths, cfg.train.per_device_train_batch_size,
                                                            run.fast.padding_free)
    checkpointing, reason = decide_checkpointing(cfg, tokens)
    note(f"gradient checkpointing {reason}, largest micro-batch "
         + (f"{tokens:,} tokens" if tokens is not None else "batch x cutoff_len (streaming)"))
    return checkpointing


def build(run: Setup) -> tuple[Setup, Any]:
    """The model (seeded: adapter init, LoRA A and value heads, repeats run to run, as the data order
    does); the returned Setup has the loss settled for this model."""
    import dataclasses

    from transformers import set_seed

    from tuneforge.launch.entry import join_deepspeed
    from tuneforge.model import kernels
    from tuneforge.model.adapters import count_parameters

    cfg = run.cfg
    set_seed(cfg.train.seed)
    join_deepspeed(cfg)  # ZeRO-3 shards the weights as they load
    model = run.stage.build_model(cfg, run.precision, run.fast.attn_implementation)
    run = dataclasses.replace(run, fast=kernels.settle_loss(run.fast, cfg, model))
    trainable, total = count_parameters(model)
    p = run.precision
    note(f"{cfg.method.finetuning_type} on {cfg.model.model_name_or_path}: trainable {trainable:,} of {total:,} "
         f"parameters ({100 * trainable / total:.4f}%), device {p.device}, "
         f"{'bf16' if p.bf16 else 'fp16' if p.fp16 else 'fp32'}")
    return run, model


def fit(run: Setup, prepared: Prepared, model: Any) -> StageResult:
    from tuneforge.config.stages import facts
    from tuneforge.launch.entry import rank_zero_first
    from tuneforge.log import process_rank
    from tuneforge.stages import StageContext
    from tuneforge.train.outputs import clear_previous_run, write_run_config

    cfg = run.cfg
    with rank_zero_first():  # one process clears and writes the folder, after every rank has read it in setup
        if process_rank() == 0:
            if cfg.train.overwrite_output_dir and not run.resume:
                clear_previous_run(cfg.train.output_dir)
            write_run_config(cfg, cfg.train.output_dir)
    if facts(cfg.method.stage).padding_free:
        note(f"fast path: {run.fast.describe()}")
    ctx = StageContext(cfg=cfg, args=prepared.args, model=model, tokenizer=prepared.tokenizer,
                       template=prepared.template, data=prepared.data, precision=run.precision, fast=run.fast,
                       resume=run.resume)
    return run.stage.run(ctx)


def finish(run: Setup, result: StageResult) -> None:
    from tuneforge.evaluate.predict import maybe_predict
    from tuneforge.train.plot import plot_losses

    from tuneforge.log import process_rank

    cfg = run.cfg
    if process_rank() != 0:
        return  # rank 0 plots, sums up and predicts
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
    maybe_predict(cfg)
