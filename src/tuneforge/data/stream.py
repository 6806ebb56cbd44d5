"""`streaming: true`: datasets read and encoded while training, for data larger than memory or disk.

Built on `datasets.IterableDataset`: each dataset's files are read by our own readers (the same
messages, encodings and bad-record handling as the map-style path) one record at a time, shuffled
in a buffer of `buffer_size` records, mixed by `mix_strategy` / `interleave_probs`, and encoded in
batches by the stage's batch encoder as the Trainer asks for them. Memory stays flat: the shuffle
buffer and one batch. A stream has no length, so `max_steps` says when training ends (config/load.py
refuses streaming without it), and `val_size` is a number of samples taken from the stream's start.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

from tuneforge.config.schema import DataConfig
from tuneforge.config.stages import facts
from tuneforge.data.encoded import BATCH, PRETRAIN_BATCH, EncodedData, batch_encoder, features
from tuneforge.data.loader import LoadReport, check_stage_fits, example_row, example_schema, iter_examples, mix_datasets
from tuneforge.data.readers import local_files
from tuneforge.data.registry import DatasetSpec, resolve
from tuneforge.data.templates import BoundTemplate
from tuneforge.log import note

SHOWN_SKIPS = 5  # bad records named while streaming (bad_records: skip); later ones are only counted


def _records(specs: list[DatasetSpec], data: DataConfig, stage: str) -> Iterator[dict[str, Any]]:
    """Example rows of `specs` (one per file of a dataset, so that dataloader workers share files)."""
    report = LoadReport()
    shown = 0
    for spec in specs:
        for example in iter_examples(spec, data, stage, report):
            for message in report.skipped:  # the records skipped since the last example
                shown += 1
                if shown <= SHOWN_SKIPS:
                    note(f"skipped a bad record (bad_records: skip): {message}"
                         + ("; further ones are skipped without a note" if shown == SHOWN_SKIPS else ""))
            report.skipped.clear()  # a stream keeps no list of them
            yield example_row(example)


def _stream(spec: DatasetSpec, data: DataConfig, stage: str) -> Any:
    from datasets import Features, IterableDataset

    shards = [dataclasses.replace(spec, path=str(path)) for path in local_files(spec)] if spec.load_from == "file" \
        else [spec]
    # max_samples counts over the whole dataset, not per shard: applied below with take()
    per_shard = data.model_copy(update={"max_samples": None})
    stream = IterableDataset.from_generator(_records, features=Features.from_arrow_schema(example_schema()),
                                            gen_kwargs={"specs": shards, "data": per_shard, "stage": stage})
    limit = min(n for n in (data.max_samples, spec.num_samples, float("inf")) if n is not None)
    return stream if limit == float("inf") else stream.take(int(limit))


def stream_datasets(data: DataConfig, template: BoundTemplate, stage: str, *, seed: int = 42) -> EncodedData:
    """The training stream (and a held-out eval stream of `val_size` samples), encoded lazily."""
    report = LoadReport()
    parts = []
    for spec in resolve(data.dataset or [], data.dataset_dir):
        check_stage_fits(spec, stage)
        parts.append(_stream(spec, data, stage))
        peek = LoadReport()  # placeholders left in the first records: said once, before training
        for _ in itertools.islice(iter_examples(spec, data, stage, peek), 20):
            pass
        report.warnings += peek.warnings
    stream = mix_datasets(parts, data.mix_strategy, data.interleave_probs, seed)
    held_out = None
    if data.val_size and not data.eval_dataset:  # eval_dataset comes first, as without streaming
        held_out, stream = stream.take(int(data.val_size)), stream.skip(int(data.val_size))
    stream = stream.shuffle(seed=seed, buffer_size=data.buffer_size)
    train = encode_stream(stream, template, stage, data)
    evals = encode_stream(held_out, template, stage, data) if held_out is not None else None
    return EncodedData(train=train, eval=evals, report=report)


def encode_stream(stream: Any, template: BoundTemplate, stage: str, data: DataConfig) -> Any:
    kind = facts(stage).data
    return stream.map(batch_encoder(template, stage, data), batched=True,
                      batch_size=PRETRAIN_BATCH if kind == "pretrain" else BATCH,
                      remove_columns=list(example_schema().names),
                      features=features(kind, template.images is not None))


def first_sample(stream: Any) -> dict[str, Any] | None:
    """The first encoded sample of a stream (reads and encodes one batch): the records' mistakes and
    a cutoff_len that keeps nothing show up before any weights load, as they do without streaming."""
    return next(iter(stream), None)
