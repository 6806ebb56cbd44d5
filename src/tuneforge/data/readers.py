"""Read raw rows from local files, folders and hub datasets.

JSON, JSONL, CSV and TXT are parsed here (not through `datasets`) so that a broken file is
reported with its line number; Parquet and Arrow go through pyarrow; hub datasets through
`datasets.load_dataset`. Each row comes with a label ("record 12" / "line 13") for messages.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.data.registry import DatasetSpec

SUFFIXES = {".json", ".jsonl", ".csv", ".parquet", ".arrow", ".txt"}
Row = tuple[str, dict[str, Any]]  # (label, row)


def _json(path: Path) -> Iterator[Row]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            yield from _jsonl(path)  # a .json file holding one object per line
            return
        raise DataError(f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                        source=str(path)) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError("expected a list of records", source=str(path))
    for index, row in enumerate(data):
        yield f"record {index}", row


def _jsonl(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield f"line {lineno}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON at column {exc.pos + 1}: {exc.msg}",
                                source=f"{path} line {lineno}") from None


def _csv(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8", newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            yield f"line {index + 2}", dict(row)


def _txt(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                yield f"line {lineno}", {"text": line.rstrip("\n")}


def _arrow_like(path: Path) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        else:
            try:
                with pa.memory_map(str(path)) as source:
                    table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                with pa.memory_map(str(path)) as source:
                    table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read {path.suffix[1:]} file: {exc}", source=str(path)) from None
    for index, row in enumerate(table.to_pylist()):
        yield f"record {index}", row


READERS = {".json": _json, ".jsonl": _jsonl, ".csv": _csv, ".txt": _txt, ".parquet": _arrow_like,
           ".arrow": _arrow_like}


def read_file(path: Path) -> Iterator[Row]:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"unsupported file type '{path.suffix}' (use {', '.join(sorted(SUFFIXES))})",
                        source=str(path))
    try:
        yield from reader(path)
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", source=str(path)) from None


def local_files(spec: DatasetSpec) -> list[Path]:
    path = Path(spec.path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise DataError(f"folder has no {'/'.join(sorted(SUFFIXES))} files", source=str(path))
        kinds = {p.suffix.lower() for p in files}
        if len(kinds) > 1:
            raise DataError(f"folder mixes file types {sorted(kinds)}; keep one type per dataset",
                            source=str(path))
        return files
    if not path.exists():
        raise DataError(f"file does not exist (dataset '{spec.name}' in {spec.info_file})", source=str(path))
    return [path]


def read_rows(spec: DatasetSpec, cache_dir: str | None = None) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (source, label, row) for every raw record of the dataset."""
    if spec.load_from == "file":
        for path in local_files(spec):
            for label, row in read_file(path):
                yield str(path), label, row
        return
    yield from _hub_rows(spec, cache_dir)


def _hub_rows(spec: DatasetSpec, cache_dir: str | None) -> Iterator[tuple[str, str, dict[str, Any]]]:
    path = spec.path
    if spec.load_from == "ms_hub":
        if os.environ.get("USE_MODELSCOPE_HUB", "0") not in ("1", "true"):
            raise DataError(f"dataset '{spec.name}' is only on ModelScope; set USE_MODELSCOPE_HUB=1 and "
                            "install modelscope, or download it and register it with file_name")
        try:
            from modelscope import MsDataset  # type: ignore[import-not-found]
        except ImportError:
            raise DataError(f"dataset '{spec.name}' needs `pip install modelscope`") from None
        ds = MsDataset.load(path, subset_name=spec.subset, split=spec.split, cache_dir=cache_dir)
        ds = ds.to_hf_dataset() if hasattr(ds, "to_hf_dataset") else ds
    else:
        from datasets import load_dataset

        try:
            ds = load_dataset(path, name=spec.subset, data_dir=spec.folder, split=spec.split,
                              cache_dir=cache_dir)
        except Exception as exc:  # noqa: BLE001 - hub/network failures come in many types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot load dataset '{spec.name}' from '{path}' ({first}); without a network, "
                            "download it and register it in dataset_info.json with file_name") from None
    source = f"{spec.load_from}:{path}"
    for index, row in enumerate(ds):
        yield source, f"record {index}", dict(row)
