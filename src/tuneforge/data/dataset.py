"""Registered datasets -> tokenized `datasets.Dataset`s for a stage, cached on disk by fingerprint.

Nothing here holds a whole dataset as Python objects: records are converted as they are read and
written to Arrow (data/loader.py's `load_rows`), encoded by Arrow batch maps (one tokenizer call per
batch, `preprocessing_num_workers` processes), and the result stays memory-mapped. The cache key
(data/fingerprint.py) covers the source files' content, the template, the tokenizer's vocabulary and
every argument that changes the encoding, and is computed without reading the records, so a cached
start reads no data. `tokenized_path` keeps a copy where the user says (data/tokenized.py);
`streaming: true` encodes while training instead (data/stream.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.config.schema import DataConfig
from tuneforge.config.stages import facts
from tuneforge.data.encoded import BATCH, PRETRAIN_BATCH, EncodedData, batch_encoder, features, progress_bars
from tuneforge.data.fingerprint import fingerprint, hub_files, process_tag, source_key
from tuneforge.data.loader import LoadReport, example_row, load_rows
from tuneforge.data.readers import hub_dataset, local_files
from tuneforge.data.registry import resolve
from tuneforge.data.templates import BoundTemplate
from tuneforge.log import note

META = "tuneforge.json"
__all__ = ["EncodedData", "build_datasets", "cache_root", "encode_examples", "progress_bars"]


def cache_root() -> Path:
    return Path(os.environ.get("TUNEFORGE_CACHE", Path.home() / ".cache" / "tuneforge"))


def workers_for(count: int, num_proc: int | None) -> int | None:
    """Processes for encoding `count` records: preprocessing_num_workers, or (unset) one per core up to 8
    from 20,000 records on; None (this process) for small sets, where starting workers costs more."""
    if num_proc is None and count >= 20_000:
        num_proc = min(8, os.cpu_count() or 1)
    return num_proc if num_proc and num_proc > 1 and count >= 1000 else None


def encode_examples(examples: Any, template: BoundTemplate, stage: str, data: DataConfig,
                    num_proc: int | None = None, cache_file: Path | None = None) -> tuple[Any, int]:
    """Example rows (a `datasets.Dataset` from `load_rows`, or a list of Examples) -> (Dataset of the
    stage's columns, number of examples dropped). With `cache_file` the result is written there (one
    file per worker) and memory-mapped."""
    from datasets import Dataset

    raw = examples if isinstance(examples, Dataset) else Dataset.from_list([example_row(e) for e in examples])
    kind = facts(stage).data
    workers = workers_for(len(raw), num_proc)
    with progress_bars(len(raw) >= 10_000):  # instant for small sets: the bar would be noise
        encoded = raw.map(batch_encoder(template, stage, data), batched=True,
                          batch_size=PRETRAIN_BATCH if kind == "pretrain" else BATCH, num_proc=workers,
                          remove_columns=raw.column_names, features=features(kind, template.images is not None),
                          cache_file_name=str(cache_file) if cache_file else None, load_from_cache_file=False,
                          desc="tokenizing" if len(raw) >= 10_000 else None)
    return encoded, 0 if kind == "pretrain" else len(raw) - len(encoded)


def media_stamps(rows: Any) -> dict[str, list[int]]:
    """Size and mtime of every image and video file the records name. The cache key covers the dataset files
    only (a cached start reads no record), so these are kept beside the cache and checked on a cached start:
    a picture edited in place under the same name re-encodes the data."""
    stamps: dict[str, list[int]] = {}
    for column in ("images", "videos"):
        if column not in rows.column_names:
            continue
        for paths in rows.select_columns([column]).iter(batch_size=BATCH):
            for path in (p for row in paths[column] for p in row or [] if p not in stamps):
                if (stamp := _stamp(path)) is not None:
                    stamps[path] = stamp
    return stamps


def _stamp(path: str) -> list[int] | None:
    """[size, mtime in ns] of a file, None when it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def changed_media(stamps: dict[str, list[int]]) -> list[str]:
    """The files of `media_stamps` whose size or mtime is no longer the recorded one (or that are gone)."""
    return [path for path, stamp in stamps.items() if _stamp(path) != stamp]


def _cache_key(names: list[str], template: BoundTemplate, stage: str, data: DataConfig, seed: int) -> str:
    """data/fingerprint.py's key for these datasets (their files hashed, a digest remembered by stat)."""
    memo = cache_root() / "sources"
    keys = []
    specs = resolve(names, data.dataset_dir)
    for spec in specs:
        if spec.load_from == "file":
            keys.append(source_key(spec, local_files(spec), memo))
        else:
            keys.append([source_key(spec, [], memo), hub_files(hub_dataset(spec))])
    seeded = data.interleave_probs is not None or any(spec.num_samples for spec in specs)
    return fingerprint(keys, template, stage, data, seed if seeded else None)


def load_encoded(path: Path) -> tuple[Any, dict[str, Any]]:
    """A cache folder written by `_encode_cached` -> (memory-mapped Dataset, its metadata)."""
    from datasets import Dataset, concatenate_datasets

    meta = json.loads((path / META).read_text(encoding="utf-8"))
    parts = [Dataset.from_file(str(path / name)) for name in meta["files"]]
    return (parts[0] if len(parts) == 1 else concatenate_datasets(parts)), meta


def _encode_cached(names: list[str], template: BoundTemplate, stage: str, data: DataConfig,
                   seed: int) -> tuple[Any, LoadReport, int, bool]:
    root = cache_root() / "datasets"
    key = _cache_key(names, template, stage, data, seed)
    path = root / key
    if (path / META).is_file() and not data.overwrite_cache:
        dataset, meta = load_encoded(path)
        changed = changed_media(meta.get("media", {}))
        if not changed:
            return dataset, LoadReport(meta["counts"], meta["skipped"], meta.get("warnings", [])), meta["dropped"], True
        note(f"{len(changed)} image/video file(s) changed since the tokenized cache was written (e.g. {changed[0]}): "
             "encoding again")
    tmp = root / f"{key}.tmp{process_tag()}"
    try:
        raw, report = load_rows(data, names, stage, tmp / "rows", seed=seed)
        dataset, dropped = encode_examples(raw, template, stage, data, data.preprocessing_num_workers,
                                           cache_file=tmp / "data.arrow")
        if len(dataset) == 0:
            raise DataError(f"cutoff_len {data.cutoff_len} is too small: no sample of {', '.join(names)} keeps a "
                            "trained token after truncation; raise cutoff_len")
        media = media_stamps(raw)
        del raw, dataset
        shutil.rmtree(tmp / "rows")
        files = sorted(p.name for p in tmp.glob("data*.arrow"))
        meta = {"dropped": dropped, "datasets": names, "files": files, "counts": report.counts,
                "skipped": report.skipped, "warnings": report.warnings, "media": media}
        (tmp / META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        if path.exists():  # overwrite_cache, or a folder an interrupted run left without its metadata
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dataset, meta = load_encoded(path)
    return dataset, report, dropped, False


def build_datasets(data: DataConfig, template: BoundTemplate, stage: str, *, seed: int = 42,
                   need_eval: bool = False) -> EncodedData:
    if data.streaming:
        result = _streamed(data, template, stage, seed)
    elif data.tokenized_path and (saved := _saved(data, stage)) is not None:
        result = saved
    else:
        train, report, dropped, cached = _encode_cached(data.dataset or [], template, stage, data, seed)
        result = EncodedData(train=train, eval=None, report=report, dropped=dropped, from_cache=cached)
    _add_eval(result, data, template, stage, seed)
    if need_eval and result.eval is None:
        raise DataError("evaluation is on but there is no eval data; set val_size or eval_dataset")
    if data.tokenized_path and not result.from_cache:
        from tuneforge.data.tokenized import save_tokenized

        save_tokenized(result, data, stage)
    return result


def _streamed(data: DataConfig, template: BoundTemplate, stage: str, seed: int) -> EncodedData:
    from tuneforge.data.stream import first_sample, stream_datasets

    result = stream_datasets(data, template, stage, seed=seed)
    if first_sample(result.train) is None:
        raise DataError(f"cutoff_len {data.cutoff_len} is too small or the data is empty: the stream of "
                        f"{', '.join(data.dataset or [])} gives no sample with a trained token")
    return result


def _saved(data: DataConfig, stage: str) -> EncodedData | None:
    from tuneforge.data.tokenized import load_tokenized

    return load_tokenized(data, stage)


def _add_eval(result: EncodedData, data: DataConfig, template: BoundTemplate, stage: str, seed: int) -> None:
    """eval_dataset encoded on its own (cached; small enough to be read whole, also when streaming), or
    val_size samples held out of the training set."""
    train = result.train
    if result.eval is not None or (data.streaming and not data.eval_dataset):
        return
    if data.eval_dataset:
        result.eval, eval_report, _, _ = _encode_cached(data.eval_dataset, template, stage, data, seed)
        result.report.counts.update({f"{k} (eval)": v for k, v in eval_report.counts.items()})
        result.report.warnings.extend(eval_report.warnings)
    elif data.val_size:
        size = int(data.val_size) if data.val_size >= 1 else data.val_size
        if len(train) < 2 or (isinstance(size, int) and size >= len(train)):
            raise DataError(f"val_size {data.val_size} leaves no training data ({len(train)} samples)")
        split = train.train_test_split(test_size=size, seed=seed)
        result.train, result.eval = split["train"], split["test"]
