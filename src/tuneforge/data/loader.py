"""Registered datasets -> canonical Examples (strict by default; `bad_records: skip` drops bad ones).

Training reads them through `load_rows`: each dataset's records are converted as they are read and
written to an Arrow file in batches, so no list of the whole dataset ever exists (a 1 GB JSONL
trains in the memory of a few thousand records); `load_examples` returns a list for the small
sets predict and the tests use.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.config.schema import DataConfig
from tuneforge.config.stages import facts
from tuneforge.data.example import Example
from tuneforge.data.formats import alpaca, sharegpt
from tuneforge.data.readers import read_rows
from tuneforge.data.registry import DatasetSpec, resolve

CONVERTERS = {"alpaca": alpaca.convert, "sharegpt": sharegpt.convert}


@dataclass
class LoadReport:
    counts: dict[str, int] = field(default_factory=dict)  # dataset -> examples kept
    skipped: list[str] = field(default_factory=list)  # messages of dropped records
    warnings: list[str] = field(default_factory=list)  # lines to show once (placeholders left as written)


def fill_placeholders(value: Any, names: dict[str, str]) -> Any:
    """Replace {{name}}/{{author}} in every string of a raw record (the identity dataset)."""
    if isinstance(value, str):
        for key, text in names.items():
            value = value.replace("{{" + key + "}}", text)
        return value
    if isinstance(value, list):
        return [fill_placeholders(v, names) for v in value]
    if isinstance(value, dict):
        return {k: fill_placeholders(v, names) for k, v in value.items()}
    return value


def placeholder_warning(row: Any, filled: dict[str, str], where: str) -> str:
    """The line for a record that still holds {{name}}/{{author}}: left as written (LLaMA-Factory's identity
    examples run that way), naming the keys that fill them; "" when none is left."""
    missing = [k for k in ("name", "author") if k not in filled and "{{%s}}" % k in str(row)]
    if not missing:
        return ""
    return (f"{where}: has the {' and '.join('{{%s}}' % k for k in missing)} placeholder, left as written; set "
            f"{' and '.join('identity_' + k for k in missing)} to fill it")


def sample_indices(count: int, spec: DatasetSpec, seed: int) -> list[int] | None:
    """num_samples from dataset_info: the first N, or every record then repeated draws when N exceeds
    the dataset; None when the dataset is used as it is."""
    n = spec.num_samples
    if n is None or n == count:
        return None
    if n < count:
        return list(range(n))
    rng = random.Random(seed)
    return list(range(count)) + [rng.randrange(count) for _ in range(n - count)]


def check_stage_fits(spec: DatasetSpec, stage: str) -> None:
    """Preference data only feeds pairwise stages, and pairwise stages need preference data."""
    if facts(stage).data == "pairwise" and not spec.ranking:
        raise DataError(f"stage {stage} needs preference pairs, but dataset '{spec.name}' in {spec.info_file} has "
                        "no \"ranking\": true (with chosen/rejected columns)")
    if facts(stage).data != "pairwise" and spec.ranking:
        raise DataError(f"dataset '{spec.name}' is a preference dataset (ranking: true); use it with stage rm or dpo, "
                        f"not {stage}")
    if stage == "kto" and not spec.columns.get("kto_tag"):
        raise DataError(f"stage kto needs a desirable/undesirable label, but dataset '{spec.name}' in "
                        f"{spec.info_file} maps no 'kto_tag' column")


def iter_examples(spec: DatasetSpec, data: DataConfig, stage: str, report: LoadReport,
                  cache_dir: str | None = None) -> Iterator[Example]:
    """The Examples of one dataset as its records are read (nothing is held): placeholders filled, bad
    records stopped at or skipped (`bad_records`), at most `max_samples` kept."""
    placeholders = {k: v for k, v in (("name", data.identity_name), ("author", data.identity_author)) if v}
    convert = CONVERTERS[spec.formatting]
    kept = seen = bad = 0
    first_bad, warned = "", ""
    for source, label, row in read_rows(spec, cache_dir):
        seen += 1
        where = f"{source} {label}"
        if placeholders:
            row = fill_placeholders(row, placeholders)
        if seen <= 20 and not warned:  # identity-style data: unfilled placeholders are learned literally
            warned = placeholder_warning(row, placeholders, where)
            if warned:
                report.warnings.append(warned)
        try:
            example = convert(row, spec, stage, where)
        except DataError as exc:
            if data.bad_records == "error":
                raise
            bad += 1
            first_bad = first_bad or str(exc)
            report.skipped.append(str(exc))
            continue
        yield example
        kept += 1
        if data.max_samples is not None and kept >= data.max_samples:
            break
    if not kept:
        origin = spec.path if spec.load_from == "file" else f"{spec.load_from}:{spec.path}"
        if not seen:
            raise DataError(f"dataset '{spec.name}' has no records (an empty file or list); add records or "
                            "remove it from 'dataset'", source=origin)
        raise DataError(f"dataset '{spec.name}' has no usable records: all {bad} were bad and skipped "
                        f"(bad_records: skip); the first: {first_bad}", source=origin)


def load_examples(data: DataConfig, names: list[str], stage: str, *, seed: int = 42,
                  cache_dir: str | None = None) -> tuple[list[Example], LoadReport]:
    """Every Example of `names`, as a list (predict's prompts and tests; training goes through
    `load_rows`, which never holds them all)."""
    report = LoadReport()
    parts: list[list[Example]] = []
    for spec in resolve(names, data.dataset_dir):
        check_stage_fits(spec, stage)
        kept = list(iter_examples(spec, data, stage, report, cache_dir))
        indices = sample_indices(len(kept), spec, seed)
        if indices is not None:
            kept = [kept[i] for i in indices]
        report.counts[spec.name] = len(kept)
        parts.append(kept)
    return mix(parts, data.mix_strategy, data.interleave_probs, seed), report


# ------------------------------------------------------------------ Arrow: records never held whole

_MESSAGE = [("role", "string"), ("content", "string")]


def example_schema() -> Any:
    """The Arrow schema of an Example row (the same keys as Example.to_dict)."""
    import pyarrow as pa

    message = pa.struct([(name, getattr(pa, kind)()) for name, kind in _MESSAGE])
    return pa.schema([("messages", pa.list_(message)), ("system", pa.string()), ("tools", pa.string()),
                      ("text", pa.string()), ("chosen", message), ("rejected", message), ("kto_label", pa.bool_()),
                      ("source", pa.string()), ("images", pa.list_(pa.string())), ("videos", pa.list_(pa.string()))])


def example_row(example: Example) -> dict[str, Any]:
    """Example.to_dict without dataclasses.asdict, which deep-copies every field (20x slower, and this runs
    once per record)."""
    def message(m: Any) -> dict[str, str] | None:
        return None if m is None else {"role": m.role, "content": m.content}

    return {"messages": [{"role": m.role, "content": m.content} for m in example.messages],
            "system": example.system, "tools": example.tools, "text": example.text,
            "chosen": message(example.chosen), "rejected": message(example.rejected),
            "kto_label": example.kto_label, "source": example.source, "images": example.images,
            "videos": example.videos}


def write_rows(examples: Iterable[Example], path: Path, batch: int = 1000) -> int:
    """Examples -> an Arrow stream file, `batch` rows at a time; -> how many were written."""
    import pyarrow as pa

    schema = example_schema()
    count = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        rows: list[dict[str, Any]] = []
        for example in examples:
            rows.append(example_row(example))
            if len(rows) == batch:
                writer.write_batch(pa.RecordBatch.from_pylist(rows, schema=schema))
                count, rows = count + len(rows), []
        if rows:
            writer.write_batch(pa.RecordBatch.from_pylist(rows, schema=schema))
            count += len(rows)
    return count


def load_rows(data: DataConfig, names: list[str], stage: str, folder: Path, *, seed: int = 42,
              cache_dir: str | None = None) -> tuple[Any, LoadReport]:
    """The Examples of `names` as one memory-mapped `datasets.Dataset` of Example rows, written to
    `folder` while the records are read: memory stays flat whatever the size of the data."""
    from datasets import Dataset

    report = LoadReport()
    parts = []
    folder.mkdir(parents=True, exist_ok=True)
    for index, spec in enumerate(resolve(names, data.dataset_dir)):
        check_stage_fits(spec, stage)
        path = folder / f"{index}.arrow"
        count = write_rows(iter_examples(spec, data, stage, report, cache_dir), path)
        part = Dataset.from_file(str(path))
        indices = sample_indices(count, spec, seed)
        if indices is not None:
            part = part.select(indices)
        report.counts[spec.name] = len(part)
        parts.append(part)
    return mix_datasets(parts, data.mix_strategy, data.interleave_probs, seed), report


def mix_datasets(parts: list[Any], strategy: str, probs: list[float] | None = None, seed: int = 42) -> Any:
    """Several datasets (map-style or streamed) as one, through `datasets` (LLaMA-Factory's
    mix_strategy and interleave_probs): `concat` one after another; `interleave_under` one record of
    each in turn (or drawn with `probs`) until one runs out; `interleave_over` until every one has
    run out, those that did starting over."""
    from datasets import concatenate_datasets, interleave_datasets

    if len(parts) == 1:
        return parts[0]
    if strategy == "concat":
        return concatenate_datasets(parts)
    stopping = "first_exhausted" if strategy == "interleave_under" else "all_exhausted"
    return interleave_datasets(parts, probabilities=probs, seed=seed, stopping_strategy=stopping)


def mix(parts: list[list[Example]], strategy: str, probs: list[float] | None = None, seed: int = 42
        ) -> list[Example]:
    """`mix_datasets` for lists of Examples (the same order)."""
    if strategy == "concat" or len(parts) < 2:
        return [example for part in parts for example in part]
    from datasets import Dataset

    positions = [Dataset.from_dict({"part": [p] * len(part), "at": list(range(len(part)))})
                 for p, part in enumerate(parts)]
    order = mix_datasets(positions, strategy, probs, seed)
    return [parts[p][i] for p, i in zip(order["part"], order["at"])]
