"""Registered datasets -> canonical Examples (strict by default; `bad_records: skip` drops bad ones)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
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


def _sample(examples: list[Example], spec: DatasetSpec, seed: int) -> list[Example]:
    """num_samples from dataset_info: first N, or repeated draws when N exceeds the dataset."""
    n = spec.num_samples
    if n is None or n == len(examples):
        return examples
    if n < len(examples):
        return examples[:n]
    rng = random.Random(seed)
    return examples + [rng.choice(examples) for _ in range(n - len(examples))]


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


def load_examples(data: DataConfig, names: list[str], stage: str, *, seed: int = 42,
                  cache_dir: str | None = None) -> tuple[list[Example], LoadReport]:
    placeholders = {k: v for k, v in (("name", data.identity_name), ("author", data.identity_author)) if v}
    report = LoadReport()
    parts: list[list[Example]] = []
    for spec in resolve(names, data.dataset_dir):
        check_stage_fits(spec, stage)
        convert = CONVERTERS[spec.formatting]
        kept: list[Example] = []
        seen = bad = 0
        for source, label, row in read_rows(spec, cache_dir):
            seen += 1
            where = f"{source} {label}"
            if placeholders:
                row = fill_placeholders(row, placeholders)
            if seen <= 20:  # identity-style data: unfilled placeholders would be learned literally
                missing = [k for k in ("name", "author") if k not in placeholders and "{{%s}}" % k in str(row)]
                if missing:
                    raise DataError(f"has the {' and '.join('{{%s}}' % k for k in missing)} placeholder; set "
                                    f"{' and '.join('identity_' + k for k in missing)} in the config",
                                    source=where)
            try:
                kept.append(convert(row, spec, stage, where))
            except DataError as exc:
                if data.bad_records == "error":
                    raise
                bad += 1
                report.skipped.append(str(exc))
            if data.max_samples is not None and len(kept) >= data.max_samples:
                break
        if not kept:
            origin = spec.path if spec.load_from == "file" else f"{spec.load_from}:{spec.path}"
            if not seen:
                raise DataError(f"dataset '{spec.name}' has no records (an empty file or list); add records or "
                                "remove it from 'dataset'", source=origin)
            raise DataError(f"dataset '{spec.name}' has no usable records: all {bad} were bad and skipped "
                            f"(bad_records: skip); the first: {report.skipped[-bad]}", source=origin)
        kept = _sample(kept, spec, seed)
        report.counts[spec.name] = len(kept)
        parts.append(kept)
    return mix(parts, data.mix_strategy), report


def mix(parts: list[list[Example]], strategy: str) -> list[Example]:
    """Several datasets as one (LLaMA-Factory's mix_strategy, without interleave_probs): `concat` one
    after another; `interleave_under` one record of each in turn until the smallest runs out;
    `interleave_over` until the largest runs out, the others starting over."""
    if strategy == "concat" or len(parts) < 2:
        return [example for part in parts for example in part]
    rounds = min(map(len, parts)) if strategy == "interleave_under" else max(map(len, parts))
    return [part[i % len(part)] for i in range(rounds) for part in parts]
