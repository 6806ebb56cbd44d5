"""Batched generation over the eval dataset, scored with BLEU-4 / ROUGE (LLaMA-Factory's predict).

Each example of `eval_dataset` becomes one sample: the prompt is every message but the last answer
(rendered with the template's generation prompt), the label is the last answer. Writes, in
`output_dir` and nothing else:

- `generated_predictions.jsonl`: one `{"prompt", "predict", "label"}` object per line (the rendered
  prompt text, the model's answer, the reference), LLaMA-Factory's keys;
- `predict_results.json`: `predict_bleu-4`, `predict_rouge-1`, `predict_rouge-2`, `predict_rouge-l`
  (x100, averaged over samples, see `evaluate.metrics`), `predict_runtime` (seconds spent
  generating), `predict_samples_per_second`, `predict_steps_per_second` (generate calls) and
  `predict_tokens_per_second` (generated tokens, counted by re-tokenizing the answers).

Reached two ways: `tuneforge predict CONFIG` (always predicts), and `tuneforge train` with
`do_predict: true` + `predict_with_generate: true` (what LLaMA-Factory users write; with
`do_train: false` nothing trains and output_dir may already hold files). Generation follows the
config's generation keys (do_sample, temperature, max_new_tokens, ...), batched by
`per_device_eval_batch_size`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError, DataError
from tuneforge.config.schema import ModelConfig, RunConfig
from tuneforge.data.example import TRAINED_ROLES, Example
from tuneforge.infer.base import Engine
from tuneforge.infer.images import Video
from tuneforge.log import note

PREDICTIONS_FILE = "generated_predictions.jsonl"
RESULTS_FILE = "predict_results.json"
# conversations per batch_generate call: progress is reported between calls (vLLM batches a call whole)
CHUNK_BATCHES = 8



@dataclass
class Sample:
    example: Example
    label: str


@dataclass
class PredictResult:
    metrics: dict[str, float]
    predictions_path: Path
    results_path: Path
    rows: list[dict[str, str]]


# ---------------------------------------------------------------------------------------- checks
def eval_dataset_names(cfg: RunConfig) -> list[str]:
    """The datasets to predict on: eval_dataset; without it and with do_train off, `dataset` (what
    LLaMA-Factory's older predict examples used)."""
    if cfg.data.eval_dataset:
        return cfg.data.eval_dataset
    if not cfg.train.do_train and cfg.data.dataset:
        return cfg.data.dataset
    raise ConfigError(f"{cfg.source or 'config'}: prediction needs 'eval_dataset' (the datasets to generate "
                      "answers for)")


def check_predict(cfg: RunConfig) -> Path:
    """Everything about a prediction run that can be checked without data or weights; returns output_dir."""
    where = cfg.source or "config"
    if cfg.method.stage != "sft":
        raise ConfigError(f"{where}: prediction needs stage: sft (stage {cfg.method.stage} has no answers to "
                          "compare with)")
    if not cfg.train.output_dir:
        raise ConfigError(f"{where}: 'output_dir' is required for prediction (generated_predictions.jsonl and "
                          "predict_results.json are written there)")
    out = Path(cfg.train.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir '{out}' is a file")
    eval_dataset_names(cfg)
    from tuneforge.evaluate.metrics import load_libraries

    load_libraries()  # the metrics extra is installed, before minutes of generation
    return out


def load_samples(cfg: RunConfig) -> tuple[list[Sample], dict[str, int]]:
    """Eval examples -> (prompt messages, label) samples; counts per dataset."""
    from tuneforge.data.loader import load_examples

    examples, report = load_examples(cfg.data, eval_dataset_names(cfg), "sft", seed=cfg.train.seed)
    for line in report.warnings:  # {{name}}/{{author}} left in: the labels hold them as written
        note(line)
    samples = []
    for example in examples:
        messages = example.messages
        if not messages or messages[-1].role not in TRAINED_ROLES:
            raise DataError("the conversation does not end with an answer to compare predictions with",
                            source=example.source or None)
        prompt = Example(messages=messages[:-1], system=example.system, tools=example.tools, source=example.source,
                         images=example.images, videos=example.videos)
        samples.append(Sample(prompt, messages[-1].content))
    return samples, report.counts


# ---------------------------------------------------------------------------------------- the run
def model_after_training(cfg: RunConfig) -> ModelConfig:
    """The model section that loads what `train` just saved to output_dir: the new LoRA adapter on
    top of the base (earlier adapters kept), or the saved full/freeze model."""
    out = str(cfg.train.output_dir)
    if cfg.method.finetuning_type == "lora":
        adapters = list(cfg.model.adapter_name_or_path or [])
        if adapters and not cfg.method.create_new_adapter:
            adapters = adapters[:-1]  # training continued the last adapter; output_dir holds its new version
        return cfg.model.model_copy(update={"adapter_name_or_path": adapters + [out]})
    return cfg.model.model_copy(update={"model_name_or_path": out, "adapter_name_or_path": None})


def generate_answers(engine: Any, samples: list[Sample], batch_size: int) -> tuple[list[str], int]:
    """Answers in sample order, and the number of generate steps. Samples that share a system prompt
    are batched together; samples with tools or images go one at a time (batch_generate takes neither)."""
    answers: list[str | None] = [None] * len(samples)
    groups: dict[str | None, list[int]] = {}
    singles: list[int] = []
    for index, sample in enumerate(samples):
        if sample.example.tools or sample.example.images or sample.example.videos:
            singles.append(index)
        else:
            groups.setdefault(sample.example.system, []).append(index)
    steps, done, last_report = 0, 0, time.perf_counter()
    chunk = batch_size * CHUNK_BATCHES
    for system, indices in groups.items():
        for start in range(0, len(indices), chunk):
            part = indices[start:start + chunk]
            texts = engine.batch_generate([samples[i].example.messages for i in part], system, batch_size=batch_size)
            for i, text in zip(part, texts):
                answers[i] = text
            steps += math.ceil(len(part) / batch_size)
            done += len(part)
            if time.perf_counter() - last_report > 10 and done < len(samples):
                note(f"predict: {done}/{len(samples)} samples")
                last_report = time.perf_counter()
    for i in singles:
        example = samples[i].example
        media = [*example.images, *(Video(path) for path in example.videos)]  # videos ride with the pictures
        pictures = {"images": media} if media else {}
        answers[i] = engine.generate(example.messages, example.system, example.tools, **pictures)[0].text
        steps += 1
    return [a or "" for a in answers], steps


def run_prediction(cfg: RunConfig, *, engine: Engine | None = None, model: ModelConfig | None = None) -> PredictResult:
    """Generate for every eval sample, score, write the two files. `engine` (an `infer` engine) is
    created unless given, for `model` (default: cfg.model) with cfg's template and generation keys."""
    from tuneforge.evaluate.metrics import similarity_scores
    from tuneforge.atomic import write_atomic

    out = check_predict(cfg)
    samples, counts = load_samples(cfg)
    batch_size = cfg.train.per_device_eval_batch_size
    note(f"predict: {len(samples)} samples ({', '.join(f'{k}: {v}' for k, v in counts.items())}), "
         f"batch size {batch_size}")
    if engine is None:
        from tuneforge.infer.engine import create_engine

        engine = create_engine(model or cfg.model, cfg.data, cfg.generate)
    prompts = [engine.prompt_text(s.example.messages, s.example.system, s.example.tools) for s in samples]

    started = time.perf_counter()
    answers, steps = generate_answers(engine, samples, batch_size)
    runtime = max(time.perf_counter() - started, 1e-9)

    labels = [s.label for s in samples]
    scores = similarity_scores(answers, labels)
    tokenizer = getattr(engine, "tokenizer", None)
    tokens = (sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers) if tokenizer is not None
              else sum(len(a.split()) for a in answers))
    metrics: dict[str, float] = {f"predict_{name}": round(value, 4) for name, value in scores.items()}
    metrics.update({
        "predict_runtime": round(runtime, 4),
        "predict_samples_per_second": round(len(samples) / runtime, 3),
        "predict_steps_per_second": round(steps / runtime, 3),
        "predict_tokens_per_second": round(tokens / runtime, 3),
    })

    out.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": p, "predict": a, "label": label} for p, a, label in zip(prompts, answers, labels)]
    predictions_path, results_path = out / PREDICTIONS_FILE, out / RESULTS_FILE
    write_atomic(predictions_path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    write_atomic(results_path, json.dumps(metrics, indent=2) + "\n")
    note(f"predict: bleu-4 {scores['bleu-4']:.2f}, rouge-1 {scores['rouge-1']:.2f}, "
         f"rouge-2 {scores['rouge-2']:.2f}, rouge-l {scores['rouge-l']:.2f} on {len(samples)} samples in "
         f"{runtime:.1f}s ({tokens / runtime:.1f} tokens/s); wrote {predictions_path} and {results_path}")
    return PredictResult(metrics, predictions_path, results_path, rows)


def maybe_predict(cfg: RunConfig) -> None:
    """The `train` command's prediction step, LLaMA-Factory style.

    - do_train false: predict with the configured model (base + adapter_name_or_path); needs
      do_predict and predict_with_generate (else there is nothing to do: ConfigError).
    - do_train true, after training: predict with what was just saved to output_dir when
      do_predict is on; otherwise do nothing.

    Returns None, so that `train` can end with `return maybe_predict(cfg)`; the results are in the
    two files (use `run_prediction` for a PredictResult).
    """
    t, where = cfg.train, cfg.source or "config"
    if not t.do_predict:
        if t.do_train:
            return
        raise ConfigError(f"{where}: do_train is false (the default, as in LLaMA-Factory) and do_predict is off, so "
                          "there is nothing to do; set do_train: true to train, or do_predict: true and "
                          "predict_with_generate: true to generate for eval_dataset")
    if not t.predict_with_generate:
        raise ConfigError(f"{where}: do_predict needs predict_with_generate: true (tuneforge predicts by "
                          "generating answers and scoring BLEU/ROUGE)")
    run_prediction(cfg, model=model_after_training(cfg) if t.do_train else None)
