"""`tuneforge data check CONFIG`: datasets + template + tokenizer, no model weights."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from tuneforge.data.labels import IGNORE_INDEX

console = Console(highlight=False, soft_wrap=True)


def _percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else 0


def show_sample(tokenizer, input_ids: list[int], labels: list[int]) -> Text:
    """Trained tokens in green, masked ones dimmed. Each run of tokens is decoded at once: a Chinese
    character split over two byte-level tokens decodes whole only with both."""
    from itertools import groupby

    text = Text()
    pairs = zip(input_ids, labels)
    for trained, run in groupby(pairs, key=lambda pair: pair[1] != IGNORE_INDEX):
        text.append(tokenizer.decode([tid for tid, _ in run]), style="bold green" if trained else "dim")
    return text


def run_check(config_path: Path, overrides: list[str], samples: int, console: Console = console) -> None:
    """Print the check on `console` (the web UI passes a recording one)."""
    from tuneforge.cli.config import load_config
    from tuneforge.config.stages import facts
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.templates import template_for
    from tuneforge.data.templates.check import compare_with_tokenizer
    from tuneforge.model.load import load_tokenizer
    from tuneforge.model.vision import vision_data

    # a check writes nothing: a training config need not name its output_dir here; it reads the data whole,
    # also for a config that streams it while training
    cfg = load_config(config_path, [*overrides, "streaming=false"], base={"output_dir": "unused-by-data-check"})
    cfg = checked_data(cfg)
    tokenizer = load_tokenizer(cfg.model)
    image_processor, data_cfg = vision_data(cfg.model, cfg.data)  # a vision model: its processor and template
    template = template_for(data_cfg, tokenizer, image_processor)
    stage = cfg.method.stage
    console.print(f"template [bold]{escape(template.name)}[/] ({escape(getattr(template.template, 'notes', ''))}); "
                  f"stop tokens {escape(str(template.stop_strings()))}")
    if stage == "sft":
        mismatch = compare_with_tokenizer(template)
        console.print(f"[yellow]{escape(mismatch)}[/]" if mismatch else "template matches the tokenizer's chat_template"
                      if getattr(tokenizer, "chat_template", None) else "tokenizer has no chat_template to compare")
    data = build_datasets(cfg.data, template, stage, seed=cfg.train.seed)
    for name, count in data.report.counts.items():
        console.print(f"dataset [bold]{escape(name)}[/]: {count} examples")
    for line in data.report.warnings:
        console.print(Text(line, style="yellow"))
    if data.report.skipped:
        console.print(f"[yellow]skipped {len(data.report.skipped)} bad records[/]; first ones:")
        for line in data.report.skipped[:5]:
            console.print(f"  {line}", markup=False)  # file paths may hold [brackets]
    if template.images is not None:  # pictures: counts, sizes, tokens, and the records dropped for them
        for line in vision_lines(cfg, template, data, stage):
            console.print(line, markup=False)
    lengths = list(data.train["full_len"]) + (list(data.eval["full_len"]) if data.eval is not None else [])
    over = sum(1 for n in lengths if n > cfg.data.cutoff_len)
    console.print(f"samples: {len(data.train)} train" + (f", {len(data.eval)} eval" if data.eval is not None else "")
                  + (f", {data.dropped} dropped (nothing trainable within cutoff_len)" if data.dropped else ""))
    console.print(f"tokens per sample: p50 {_percentile(lengths, 0.5)}, p90 {_percentile(lengths, 0.9)}, "
                  f"p99 {_percentile(lengths, 0.99)}, max {max(lengths)}; {over} exceed cutoff_len "
                  f"{cfg.data.cutoff_len} (truncated)")
    if "labels" in data.train.column_names:
        trained = sum(sum(1 for x in row if x != IGNORE_INDEX) for row in data.train["labels"])
        total = sum(len(row) for row in data.train["input_ids"])
        console.print(f"trained tokens: {trained} of {total} ({100 * trained / max(total, 1):.1f}%)")
    if facts(stage).padding_free:
        show_batching([len(row) for row in data.train["input_ids"]], cfg, console)
    for index in range(min(samples, len(data.train))):
        show_row(tokenizer, data.train[index], index, console)


def vision_lines(cfg, template, data, stage: str) -> list[str]:
    from tuneforge.data.encode.multimodal import dropped_report, image_report
    from tuneforge.data.loader import load_examples

    lines = image_report(template, data.train)
    if data.dropped:
        examples, _ = load_examples(cfg.data, cfg.data.dataset or [], stage, seed=cfg.train.seed)
        kept = set(data.train["source"]) | set(data.eval["source"] if data.eval is not None else [])
        lines += dropped_report(template, cfg.data, examples, kept)
    return lines


def checked_data(cfg):
    """A predict config (do_train off, only eval_dataset) is checked on its eval datasets."""
    from tuneforge.config.errors import ConfigError

    d = cfg.data
    if d.dataset:
        return cfg
    if not d.eval_dataset:
        raise ConfigError(f"{cfg.source or 'config'}: nothing to check: set dataset (or eval_dataset)")
    return cfg.model_copy(update={"data": d.model_copy(update={"dataset": d.eval_dataset, "eval_dataset": None})})


def show_batching(lengths: list[int], cfg, console: Console = console) -> None:
    """What the fast path will compute: padding-free micro-batches vs padded ones, and packed rows."""
    from tuneforge.data.packing import pack_lengths
    from tuneforge.model.memory.settings import worst_micro_batch

    batch = cfg.train.per_device_train_batch_size
    real = sum(lengths)
    # padded batches as a DataLoader in dataset order would form them (the padding a padded run computes)
    padded = sum(max(lengths[i:i + batch]) * len(lengths[i:i + batch]) for i in range(0, len(lengths), batch))
    rows = len(pack_lengths(lengths, cfg.data.cutoff_len))
    console.print(f"batches of {batch}: padding-free micro-batch at most "
                  f"{worst_micro_batch(lengths, batch, True):,} tokens (mean {real / max(len(lengths), 1) * batch:,.0f}); "
                  f"padded batches would compute {padded:,} tokens for {real:,} real "
                  f"({100 * (padded - real) / max(padded, 1):.0f}% padding); "
                  f"packing: true makes {rows:,} rows of at most {cfg.data.cutoff_len}")


def _header(index: int, what: str) -> Text:
    return (Text(f"\n--- sample {index} ({what}; ", style="bold") + Text("trained", style="bold green")
            + Text(" / ", style="bold") + Text("not trained", style="dim") + Text(") ---", style="bold"))


def show_row(tokenizer, row: dict, index: int, console: Console = console) -> None:
    """One encoded sample, whatever the stage's columns are."""
    if "labels" in row:
        console.print(_header(index, f"{len(row['input_ids'])} tokens"))
        console.print(show_sample(tokenizer, row["input_ids"], row["labels"]))
        return
    prompt = row["prompt_ids"]
    answers = [(k, row[k]) for k in ("chosen_ids", "rejected_ids", "completion_ids") if k in row]
    label = f", label {row['label']}" if "label" in row else ""
    console.print(_header(index, f"prompt {len(prompt)} tokens{label}"))
    console.print(show_sample(tokenizer, prompt, [IGNORE_INDEX] * len(prompt)))
    for key, ids in answers:
        console.print(Text(f"[{key.removesuffix('_ids')}] ", style="bold") + show_sample(tokenizer, ids, ids))
    if "reference" in row and row["reference"]:
        console.print(Text("[reference answer, not trained] ", style="bold") + Text(row["reference"], style="dim"))
