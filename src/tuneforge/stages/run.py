"""What the Trainer-based stages share: run a Trainer, then write the standard outputs."""

from __future__ import annotations

import signal
from typing import Any

from tuneforge.data.dataset import EncodedData
from tuneforge.stages import StageResult


def run_trainer(args: Any, model: Any, tokenizer: Any, data: EncodedData, collator: Any,
                resume: str | None, trainer_class: Any = None, **trainer_kwargs: Any) -> StageResult:
    """Train with `args` (built and checked before any weights load) and write the standard outputs.
    Preference stages pass their trl trainer class and its extra arguments. Every save is atomic
    (train/saves.py); a SIGTERM/SIGINT saves the step under way and ends in TrainingStopped."""
    from transformers import PrinterCallback, ProgressCallback, Trainer

    from tuneforge.train import stop
    from tuneforge.train.callbacks import ConciseProgress, JsonlLogCallback, StopCallback
    from tuneforge.train.optimizers import with_extra_optimizers
    from tuneforge.train.saves import with_atomic_saves

    train = data.train.remove_columns([c for c in data.train.column_names if c == "full_len"])
    evals = data.eval.remove_columns([c for c in data.eval.column_names if c == "full_len"]) if data.eval else None
    stopper = StopCallback(stop.active())
    trainer = with_atomic_saves(with_extra_optimizers(trainer_class or Trainer))(
        model=model, args=args, train_dataset=train, eval_dataset=evals, data_collator=collator,
        processing_class=tokenizer, callbacks=[JsonlLogCallback(args.output_dir), stopper], **trainer_kwargs)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    progress = ConciseProgress()
    trainer.add_callback(progress)
    with stop.training(f"after training finished; its outputs are in {args.output_dir}") as stops:
        try:
            result = trainer.train(resume_from_checkpoint=resume)
        except BaseException:
            progress.close()
            raise
        # the signal: this process's, or with several processes another's (all stopped at the same step)
        signum = (stops.received if stops else None) or signal.SIGTERM
        if stopper.stopped and trainer.state.global_step < trainer.state.max_steps:
            raise stopped(trainer, signum)
        outputs = _write_outputs(trainer, result, evals is not None)
        if stopper.stopped or (stops and stops.received):  # came in the last step: the run is complete all the same
            raise stopped(trainer, signum, finished=True)
    return outputs


def stopped(trainer: Any, signum: int, finished: bool = False) -> Any:
    from pathlib import Path

    from tuneforge.train.stop import TrainingStopped

    state = trainer.state
    checkpoint = Path(trainer.args.output_dir) / f"checkpoint-{state.global_step}"
    return TrainingStopped(signum, state.global_step, state.max_steps, str(checkpoint), state.log_history, finished)


def _write_outputs(trainer: Any, result: Any, has_eval: bool) -> StageResult:
    """The final model, train (and eval) metrics, and trainer_state.json last: its presence at the last
    step is what tells a later resume that this run's final files are all written."""
    metrics = dict(result.metrics)
    tokens = trainer.state.num_input_tokens_seen
    if tokens and metrics.get("train_runtime"):
        metrics["num_input_tokens_seen"] = tokens
        metrics["train_tokens_per_second"] = round(tokens / metrics["train_runtime"], 2)
    trainer.save_model()
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    eval_metrics = None
    if has_eval:
        eval_metrics = _final_eval(trainer)
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
    trainer.save_state()
    return StageResult(metrics, eval_metrics, trainer.state.log_history)


def _final_eval(trainer: Any) -> dict[str, Any]:
    """The end-of-training eval metrics: reuse the eval the last step just ran (evaluating the same
    weights again would only add a duplicate line to trainer_log.jsonl), else evaluate now."""
    last = next((e for e in reversed(trainer.state.log_history) if "eval_loss" in e), None)
    if last is not None and last.get("step") == trainer.state.global_step:
        return {k: v for k, v in last.items() if k.startswith("eval_") or k == "epoch"}
    return trainer.evaluate()
