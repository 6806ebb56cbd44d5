"""Examples -> tokenized `datasets.Dataset`s for a stage, cached on disk by fingerprint.

The fingerprint covers the examples themselves (so edited data is never served stale), the
template, the tokenizer's vocabulary and every argument that changes the encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from tuneforge import __version__
from tuneforge.config.errors import DataError
from tuneforge.config.schema import DataConfig
from tuneforge.config.stages import facts
from tuneforge.data.encode.pretrain import encode_pretrain
from tuneforge.data.encode.supervised import encode_supervised
from tuneforge.data.encode.tokenize import tokenize_turns
from tuneforge.data.example import Example
from tuneforge.data.loader import LoadReport, load_examples
from tuneforge.data.templates import BoundTemplate


@contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """datasets' progress bars on or off for one call, then as they were (their switch is process-wide)."""
    from datasets.utils import logging as bars

    was_on = bars.is_progress_bar_enabled()
    (bars.enable_progress_bar if show else bars.disable_progress_bar)()
    try:
        yield
    finally:
        (bars.enable_progress_bar if was_on else bars.disable_progress_bar)()


def cache_root() -> Path:
    return Path(os.environ.get("TUNEFORGE_CACHE", Path.home() / ".cache" / "tuneforge"))


@dataclass
class EncodedData:
    train: Any  # datasets.Dataset with input_ids, labels, full_len
    eval: Any | None
    report: LoadReport
    dropped: int = 0  # examples with no trained token left after truncation
    from_cache: bool = False
    notes: list[str] = field(default_factory=list)


def _template_key(template: BoundTemplate) -> str:
    tpl = template.template
    if template.name == "auto":
        desc: Any = template.tokenizer.chat_template
    else:
        desc = {f.name: getattr(tpl, f.name) for f in fields(tpl) if not callable(getattr(tpl, f.name))}
        desc["callables"] = [getattr(getattr(tpl, f.name), "__qualname__", None) for f in fields(tpl)
                             if callable(getattr(tpl, f.name))]
    return json.dumps([desc, template.default_system, template.enable_thinking], sort_keys=True, default=str)


def _tokenizer_key(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(body.encode()).hexdigest() + str(tokenizer.bos_token) + str(tokenizer.eos_token)


def fingerprint(examples: list[Example], template: BoundTemplate, stage: str, data: DataConfig) -> str:
    h = hashlib.sha256()
    for part in (__version__, stage, _template_key(template), _tokenizer_key(template.tokenizer),
                 json.dumps([data.cutoff_len, data.train_on_prompt, data.mask_history])):
        h.update(part.encode())
    for example in examples:
        h.update(json.dumps(example.to_dict(), ensure_ascii=False, sort_keys=True).encode())
    return h.hexdigest()[:24]


COLUMNS = {  # by the stage's data kind (config/stages.py)
    "supervised": ("input_ids", "labels", "full_len"),
    "pretrain": ("input_ids", "labels", "full_len"),
    "pairwise": ("prompt_ids", "chosen_ids", "rejected_ids", "full_len"),
    "kto": ("prompt_ids", "completion_ids", "label", "full_len"),
    "prompts": ("prompt_ids", "prompt", "reference", "full_len"),
}


def _row_encoder(template: BoundTemplate, stage: str, data: DataConfig) -> Callable[[Example], dict | None]:
    """The per-example encoder of a stage; returns None for examples with nothing to train."""
    from tuneforge.data.encode import preference

    cutoff, kind = data.cutoff_len, facts(stage).data
    if kind == "pairwise":
        return lambda example: preference.encode_pairwise(template, example, cutoff)
    if kind == "kto":
        return lambda example: preference.encode_kto(template, example, cutoff)
    if kind == "prompts":
        return lambda example: preference.encode_prompt(template, example, cutoff)

    def supervised(example: Example) -> dict | None:
        turns = tokenize_turns(template.tokenizer, template.render(example))
        full_len = sum(len(t.prompt) + len(t.answer) + len(t.suffix) for t in turns)
        encoded = encode_supervised(turns, cutoff, train_on_prompt=data.train_on_prompt,
                                    mask_history=data.mask_history)
        if encoded is None:
            return None
        return {"input_ids": encoded[0], "labels": encoded[1], "full_len": full_len}

    return supervised


def encode_examples(examples: list[Example], template: BoundTemplate, stage: str, data: DataConfig,
                    num_proc: int | None = None) -> tuple[Any, int]:
    """-> (Dataset with input_ids/labels/full_len, number of examples dropped)."""
    from datasets import Dataset

    kind = facts(stage).data
    if kind == "pretrain":
        blocks = encode_pretrain(template.tokenizer, (e.text or "" for e in examples), data.cutoff_len)
        return Dataset.from_dict({"input_ids": blocks, "labels": blocks,
                                  "full_len": [len(b) for b in blocks]}), 0

    encode_one = _row_encoder(template, stage, data)
    keys = COLUMNS[kind]

    def encode(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {key: [] for key in keys}
        for row in (dict(zip(batch, values)) for values in zip(*batch.values())):
            encoded = encode_one(Example.from_dict(row))
            if encoded is None:
                continue
            for key, value in encoded.items():
                out.setdefault(key, []).append(value)
        return out

    raw = Dataset.from_list([e.to_dict() for e in examples])
    if num_proc is None and len(examples) >= 20_000:  # big sets tokenize in parallel unless told otherwise
        num_proc = min(8, os.cpu_count() or 1)
    workers = num_proc if num_proc and num_proc > 1 and len(examples) >= 1000 else None
    with progress_bars(len(examples) >= 10_000):  # instant for small sets: the bar would be noise
        encoded = raw.map(encode, batched=True, batch_size=256, num_proc=workers, remove_columns=raw.column_names,
                          desc="tokenizing" if workers else None)
    return encoded, len(examples) - len(encoded)


def _encode_cached(names: list[str], template: BoundTemplate, stage: str, data: DataConfig,
                   seed: int) -> tuple[Any, LoadReport, int, bool]:
    from datasets import load_from_disk

    examples, report = load_examples(data, names, stage, seed=seed)
    key = fingerprint(examples, template, stage, data)
    path = cache_root() / "datasets" / key
    if path.is_dir() and not data.overwrite_cache:
        meta = json.loads((path / "tuneforge.json").read_text())
        return load_from_disk(str(path)), report, meta["dropped"], True
    dataset, dropped = encode_examples(examples, template, stage, data, data.preprocessing_num_workers)
    if len(dataset) == 0:
        raise DataError(f"cutoff_len {data.cutoff_len} is too small: no sample of {', '.join(names)} keeps a "
                        "trained token after truncation; raise cutoff_len")
    tmp = path.with_name(key + ".tmp")
    dataset.save_to_disk(str(tmp))
    (tmp / "tuneforge.json").write_text(json.dumps({"dropped": dropped, "datasets": names}))
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)
    return load_from_disk(str(path)), report, dropped, False


def build_datasets(data: DataConfig, template: BoundTemplate, stage: str, *, seed: int = 42,
                   need_eval: bool = False) -> EncodedData:
    train, report, dropped, cached = _encode_cached(data.dataset or [], template, stage, data, seed)
    result = EncodedData(train=train, eval=None, report=report, dropped=dropped, from_cache=cached)
    if data.eval_dataset:
        result.eval, eval_report, _, _ = _encode_cached(data.eval_dataset, template, stage, data, seed)
        result.report.counts.update({f"{k} (eval)": v for k, v in eval_report.counts.items()})
    elif data.val_size:
        size = int(data.val_size) if data.val_size >= 1 else data.val_size
        if len(train) < 2 or (isinstance(size, int) and size >= len(train)):
            raise DataError(f"val_size {data.val_size} leaves no training data ({len(train)} samples)")
        split = train.train_test_split(test_size=size, seed=seed)
        result.train, result.eval = split["train"], split["test"]
    if need_eval and result.eval is None:
        raise DataError("evaluation is on but there is no eval data; set val_size or eval_dataset")
    return result
