"""Examples -> tokenized `datasets.Dataset`s for a stage, cached on disk by fingerprint.

The fingerprint covers the examples themselves (so edited data is never served stale), the
template, the tokenizer's vocabulary and every argument that changes the encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tuneforge import __version__
from tuneforge.config.errors import DataError
from tuneforge.config.schema import DataConfig
from tuneforge.data.encode.pretrain import encode_pretrain
from tuneforge.data.encode.supervised import encode_supervised
from tuneforge.data.encode.tokenize import tokenize_turns
from tuneforge.data.example import Example
from tuneforge.data.loader import LoadReport, load_examples
from tuneforge.data.templates import BoundTemplate


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


def encode_examples(examples: list[Example], template: BoundTemplate, stage: str, data: DataConfig,
                    num_proc: int | None = None) -> tuple[Any, int]:
    """-> (Dataset with input_ids/labels/full_len, number of examples dropped)."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    if len(examples) < 10_000:
        disable_progress_bar()  # instant for small sets; the bar is noise
    tokenizer = template.tokenizer
    if stage == "pt":
        blocks = encode_pretrain(tokenizer, (e.text or "" for e in examples), data.cutoff_len)
        return Dataset.from_dict({"input_ids": blocks, "labels": blocks,
                                  "full_len": [len(b) for b in blocks]}), 0

    cutoff, train_on_prompt, mask_history = data.cutoff_len, data.train_on_prompt, data.mask_history

    def encode(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids": [], "labels": [], "full_len": []}
        for row in (dict(zip(batch, values)) for values in zip(*batch.values())):
            turns = tokenize_turns(tokenizer, template.render(Example.from_dict(row)))
            full_len = sum(len(t.prompt) + len(t.answer) + len(t.suffix) for t in turns)
            encoded = encode_supervised(turns, cutoff, train_on_prompt=train_on_prompt, mask_history=mask_history)
            if encoded is None:
                continue
            out["input_ids"].append(encoded[0])
            out["labels"].append(encoded[1])
            out["full_len"].append(full_len)
        return out

    raw = Dataset.from_list([e.to_dict() for e in examples])
    workers = num_proc if num_proc and num_proc > 1 and len(examples) >= 1000 else None
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
