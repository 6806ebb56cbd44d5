"""What the Trainer-based stages share: run a Trainer, then write the standard outputs."""

from __future__ import annotations

from typing import Any

from tuneforge.data.dataset import EncodedData
from tuneforge.stages import StageResult


def run_trainer(args: Any, model: Any, tokenizer: Any, data: EncodedData, collator: Any,
                resume: str | None, trainer_class: Any = None, **trainer_kwargs: Any) -> StageResult:
    """Train with `args` (built and checked before any weights load) and write the standard outputs.
    Preference stages pass their trl trainer class and its extra arguments."""
    from transformers import PrinterCallback, ProgressCallback, Trainer

    from tuneforge.train.callbacks import ConciseProgress, JsonlLogCallback

    train = data.train.remove_columns([c for c in data.train.column_names if c == "full_len"])
    evals = data.eval.remove_columns([c for c in data.eval.column_names if c == "full_len"]) if data.eval else None
    trainer = (trainer_class or Trainer)(model=model, args=args, train_dataset=train, eval_dataset=evals,
                                         data_collator=collator, processing_class=tokenizer,
                                         callbacks=[JsonlLogCallback(args.output_dir)], **trainer_kwargs)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(ConciseProgress())
    result = trainer.train(resume_from_checkpoint=resume)
    metrics = dict(result.metrics)
    tokens = trainer.state.num_input_tokens_seen
    if tokens and metrics.get("train_runtime"):
        metrics["num_input_tokens_seen"] = tokens
        metrics["train_tokens_per_second"] = round(tokens / metrics["train_runtime"], 2)
    trainer.save_model()
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    eval_metrics = None
    if evals is not None:
        eval_metrics = _final_eval(trainer)
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
    return StageResult(metrics, eval_metrics, trainer.state.log_history)


def _final_eval(trainer: Any) -> dict[str, Any]:
    """The end-of-training eval metrics: reuse the eval the last step just ran (evaluating the same
    weights again would only add a duplicate line to trainer_log.jsonl), else evaluate now."""
    last = next((e for e in reversed(trainer.state.log_history) if "eval_loss" in e), None)
    if last is not None and last.get("step") == trainer.state.global_step:
        return {k: v for k, v in last.items() if k.startswith("eval_") or k == "epoch"}
    return trainer.evaluate()
