"""What an encoded dataset is: the stage's columns and their types, and the batch encoders that make
them from Example rows (used by the cached map-style datasets and by streaming alike)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from tuneforge.config.errors import DataError
from tuneforge.config.schema import DataConfig
from tuneforge.config.stages import facts
from tuneforge.data.encode.pretrain import encode_pretrain
from tuneforge.data.encode.supervised import encode_supervised
from tuneforge.data.encode.tokenize import tokenize_turns_batch
from tuneforge.data.example import Example
from tuneforge.data.loader import LoadReport
from tuneforge.data.templates import BoundTemplate

BATCH = 256  # records per map batch: one tokenizer call each
PRETRAIN_BATCH = 1000  # documents joined and cut into blocks together (a shorter last block per batch)


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


@dataclass
class EncodedData:
    train: Any  # datasets.Dataset with input_ids, labels, full_len (an IterableDataset when streaming)
    eval: Any | None
    report: LoadReport
    dropped: int = 0  # examples with no trained token left after truncation
    from_cache: bool = False
    notes: list[str] = field(default_factory=list)


COLUMNS = {  # by the stage's data kind (config/stages.py)
    "supervised": ("input_ids", "labels", "full_len"),
    "pretrain": ("input_ids", "labels", "full_len"),
    "pairwise": ("prompt_ids", "chosen_ids", "rejected_ids", "full_len"),
    "kto": ("prompt_ids", "completion_ids", "label", "full_len"),
    "prompts": ("prompt_ids", "prompt", "reference", "full_len"),
}


# RGB pixels per picture; (height, width) pairs, flat; the same per video (frames x height x width x 3, uint8),
# (frames, height, width) triples, flat, and frames sampled per second; the record
VISION_COLUMNS = ("images", "image_hw", "videos", "video_thw", "video_fps", "source")


def features(kind: str, vision: bool = False) -> Any:
    """The encoded columns' Arrow types: token ids as int32 (half of int64's disk and page cache); with
    `vision` (a vision template on supervised data) the pictures' pixels too."""
    from datasets import Features, List, Value

    kinds = {"label": Value("bool"), "prompt": Value("string"), "reference": Value("string"),
             "full_len": Value("int32"), "images": List(Value("binary")), "source": Value("string"),
             "videos": List(Value("binary")), "video_fps": List(Value("float32"))}
    names = COLUMNS[kind] + (VISION_COLUMNS if vision and kind == "supervised" else ())
    return Features({name: kinds.get(name, List(Value("int32"))) for name in names})


def _row_encoder(template: BoundTemplate, stage: str, data: DataConfig) -> Callable[[Example], dict | None]:
    """The per-example encoder of the preference and RL stages; returns None for examples with nothing to train."""
    from tuneforge.data.encode import preference

    cutoff, kind = data.cutoff_len, facts(stage).data
    if kind == "pairwise":
        return lambda example: preference.encode_pairwise(template, example, cutoff)
    if kind == "kto":
        return lambda example: preference.encode_kto(template, example, cutoff)
    return lambda example: preference.encode_prompt(template, example, cutoff)


def check_text_only(examples: list[Example], template: BoundTemplate, stage: str) -> None:
    """Images or videos reaching a text encoder: one line saying what would take them."""
    for example in examples:
        if not (example.images or example.videos):
            continue
        what = "videos" if example.videos else "images"
        if facts(stage).data != "supervised":
            why = f"{what} are supported for stage sft, not {stage}"
        elif template.vision is None and example.videos:
            why = (f"template '{template.name}' is a text template; use a video template (qwen2_vl, qwen3_vl, "
                   "qwen3_vl_nothink) with its vision model")
        elif template.vision is None:
            why = (f"template '{template.name}' is a text template; use a vision template (qwen2_vl, qwen3_vl, "
                   "qwen3_vl_nothink, llava) with a vision model")
        else:
            why = f"model has no image processor (preprocessor_config.json) for template '{template.name}'"
        raise DataError(f"has {what}, but {why}", source=example.source)


def _rows(batch: dict[str, list]) -> Iterator[Example]:
    return (Example.from_dict(dict(zip(batch, values))) for values in zip(*batch.values()))


def batch_encoder(template: BoundTemplate, stage: str, data: DataConfig) -> Callable[[dict[str, list]], dict]:
    """A batch of Example rows (columns) -> a batch of encoded samples; examples with nothing to train
    are left out. Supervised batches go through the tokenizer in one call."""
    kind = facts(stage).data
    keys = COLUMNS[kind]
    if kind == "pretrain":
        def pretrain(batch: dict[str, list]) -> dict[str, list]:
            blocks = encode_pretrain(template.tokenizer, (text or "" for text in batch["text"]), data.cutoff_len)
            return {"input_ids": blocks, "labels": blocks, "full_len": [len(b) for b in blocks]}

        return pretrain
    if kind == "supervised" and template.images is not None:
        from tuneforge.data.encode.multimodal import vision_encoder

        return vision_encoder(template, data)
    if kind == "supervised":
        def supervised(batch: dict[str, list]) -> dict[str, list]:
            out: dict[str, list] = {key: [] for key in keys}
            examples = list(_rows(batch))
            check_text_only(examples, template, stage)
            conversations = tokenize_turns_batch(template.tokenizer, [template.render(e) for e in examples])
            for turns in conversations:
                encoded = encode_supervised(turns, data.cutoff_len, train_on_prompt=data.train_on_prompt,
                                            mask_history=data.mask_history)
                if encoded is not None:
                    out["input_ids"].append(encoded[0])
                    out["labels"].append(encoded[1])
                    out["full_len"].append(sum(len(t.prompt) + len(t.answer) + len(t.suffix) for t in turns))
            return out

        return supervised
    encode_one = _row_encoder(template, stage, data)

    def per_row(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {key: [] for key in keys}
        examples = list(_rows(batch))
        check_text_only(examples, template, stage)
        for example in examples:
            encoded = encode_one(example)
            if encoded is not None:
                for key in keys:
                    out[key].append(encoded[key])
        return out

    return per_row
