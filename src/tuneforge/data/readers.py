"""Read raw rows from local files, folders and hub datasets.

JSON, JSONL, CSV and TXT are parsed here (not through `datasets`) so that a broken file is
reported with its line number; Parquet and Arrow go through pyarrow; hub datasets through
`datasets.load_dataset`. Each row comes with a label ("record 12" / "line 13") for messages.
Text files are decoded by `tuneforge.textfile`: UTF-8 with or without a BOM, or the entry's
`"encoding"`; any other encoding is named with the command that converts it.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.config.switches import switched_on
from tuneforge.data.registry import DatasetSpec
from tuneforge.textfile import TextProblem, open_text, parse_json

SUFFIXES = {".json", ".jsonl", ".csv", ".parquet", ".arrow", ".txt"}
Row = tuple[str, dict[str, Any]]  # (label, row)
# csv refuses fields over 128 KiB by default; pandas (LLaMA-Factory's CSV path) has no such limit and
# pre-training documents are often longer
CSV_FIELD_LIMIT = 1 << 30


def _lone_surrogate(value: Any) -> str | None:
    """A JSON escape like "\\ud800" that is half of a character (json.loads lets it through; UTF-8, the
    tokenizer and Arrow cannot hold it), as the escape text; None when there is none."""
    stack = [value]
    while stack:  # a loop, not recursion: records may nest deeply
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError as exc:
                    return f"\\u{ord(item[exc.start]):04x}"
        elif isinstance(item, dict):
            stack += list(item.keys()) + list(item.values())
        elif isinstance(item, list):
            stack += item
    return None


def _record(value: Any, source: str) -> Any:
    bad = _lone_surrogate(value)
    if bad:
        raise DataError(f"has the escape {bad}, half of a UTF-16 surrogate pair and not a character on its own; "
                        "fix or remove it", source=source)
    return value


CHUNK = 1 << 20  # characters read at a time from a JSON file
NEAR_END = 16  # a decoding error this close to the end of what was read may only mean "read more"


class _JsonStream:
    """A JSON document read a chunk at a time: values come out one by one (a top-level array's
    items), so a file of any size is never held whole. Errors read as `json.loads`' would, with the
    line and column in the whole file."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.buf, self.pos, self.eof = handle, "", 0, False
        self.start = 0  # where buf starts in the file's text
        self.lines_before = 0  # line breaks in the text already dropped from buf
        self.column_before = 0  # characters after the last of them
        self.decoder = json.JSONDecoder()

    def _more(self) -> bool:
        if self.eof:
            return False
        if self.pos > len(self.buf) // 2:  # drop what was consumed, keeping the position arithmetic
            dropped = self.buf[:self.pos]
            breaks = dropped.count("\n")
            self.lines_before += breaks
            tail = len(dropped) - dropped.rfind("\n") - 1
            self.column_before = tail + (self.column_before if not breaks else 0)
            self.buf, self.pos, self.start = self.buf[self.pos:], 0, self.start + self.pos
        chunk = self.handle.read(max(CHUNK, len(self.buf)))  # doubles for a value larger than a chunk
        self.eof = not chunk
        self.buf += chunk
        return bool(chunk)

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end of the file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\n\r":
                self.pos += 1
            if self.pos < len(self.buf) or not self._more():
                return self.buf[self.pos:self.pos + 1]

    def problem(self, msg: str, at: int | None = None) -> TextProblem:
        at = self.pos if at is None else at
        breaks = self.buf.count("\n", 0, at)
        column = at - self.buf.rfind("\n", 0, at) + (self.column_before if not breaks else 0)
        line = self.lines_before + breaks + 1
        return TextProblem(f"not valid JSON at line {line} column {column}: {msg}", line)

    def value(self) -> Any:
        """The value starting at the current position (after `peek`)."""
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.buf) - NEAR_END
                at = self.start + exc.pos
                if cut and self._more():
                    continue
                raise self.problem(exc.msg, at - self.start) from None
            except (RecursionError, ValueError):
                parse_json(self.buf[self.pos:])  # raises the same TextProblem as a whole-file parse
                raise
            if end >= len(self.buf) and self._more():
                continue  # a number may go on in the next chunk
            self.pos = end
            return value

    def expect(self, char: str, msg: str) -> None:
        if self.peek() != char:
            raise self.problem(msg)
        self.pos += 1


def _json_items(stream: _JsonStream) -> Iterator[Any]:
    """The items of the top-level array, one at a time."""
    stream.expect("[", "Expecting value")
    if stream.peek() == "]":
        stream.pos += 1
        return
    while True:
        yield stream.value()
        if stream.peek() == "]":
            stream.pos += 1
            return
        stream.expect(",", "Expecting ',' delimiter")
        stream.peek()


def _json(path: Path, encoding: str | None, setting: str | None) -> Iterator[Row]:
    """A JSON list of records (or one record), read item by item."""
    with open_text(path, encoding, setting=setting) as handle:
        stream = _JsonStream(handle)
        first = stream.peek()
        if not first:
            return  # an empty file: no records (the loader says so with the dataset's name)
        try:
            if first == "[":
                for index, row in enumerate(_json_items(stream)):
                    yield f"record {index}", _record(row, f"{path} record {index}")
            else:
                data = stream.value()
            if stream.peek():
                raise stream.problem("Extra data")
        except TextProblem as exc:
            if str(exc).endswith("Extra data") and first == "{":
                yield from _jsonl(path, encoding, setting)  # a .json file holding one object per line
                return
            raise DataError(str(exc), source=str(path)) from None
    if first == "[":
        return
    if not isinstance(data, dict):
        raise DataError("expected a list of records", source=str(path))
    yield "record 0", _record(data, f"{path} record 0")


def _jsonl(path: Path, encoding: str | None, setting: str | None) -> Iterator[Row]:
    with open_text(path, encoding, setting=setting) as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = parse_json(line, one_line=True)
            except TextProblem as exc:
                raise DataError(str(exc), source=f"{path} line {lineno}") from None
            yield f"line {lineno}", _record(row, f"{path} line {lineno}")


def _csv(path: Path, encoding: str | None, setting: str | None) -> Iterator[Row]:
    limit = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        with open_text(path, encoding, setting=setting, newline="") as handle:
            reader = csv.DictReader(handle)
            try:
                for row in reader:
                    if None in row:  # more cells than the header has names
                        raise DataError(f"has {len(reader.fieldnames or []) + len(row[None])} fields but the header "
                                        f"has {len(reader.fieldnames or [])}; put quotes around text that holds "
                                        "commas", source=f"{path} line {reader.line_num}")
                    yield f"line {reader.line_num}", row
            except csv.Error as exc:
                raise DataError(f"not valid CSV: {exc}", source=f"{path} line {reader.line_num}") from None
    finally:
        csv.field_size_limit(limit)


def _txt(path: Path, encoding: str | None, setting: str | None) -> Iterator[Row]:
    with open_text(path, encoding, setting=setting) as handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                yield f"line {lineno}", {"text": line.rstrip("\n")}


def _record_batches(path: Path) -> Iterator[Any]:
    """Parquet row groups or Arrow IPC batches (stream or file format), as they are on disk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix.lower() == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=1024)
        return
    with pa.memory_map(str(path)) as source:
        try:
            stream = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:  # not the stream format: the file format
            source.seek(0)
            reader = pa.ipc.open_file(source)
            stream = (reader.get_batch(index) for index in range(reader.num_record_batches))
        yield from stream


def _arrow_like(path: Path, encoding: str | None, setting: str | None) -> Iterator[Row]:
    """Parquet and Arrow files, one record batch at a time (memory-mapped, never read whole)."""
    import pyarrow as pa

    index = 0
    batches = _record_batches(path)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"cannot read {path.suffix[1:]} file: {exc}", source=str(path)) from None
        if batch is None:
            return
        for row in batch.to_pylist():
            yield f"record {index}", row
            index += 1


READERS = {".json": _json, ".jsonl": _jsonl, ".csv": _csv, ".txt": _txt, ".parquet": _arrow_like,
           ".arrow": _arrow_like}


def read_file(path: Path, encoding: str | None = None, setting: str | None = None) -> Iterator[Row]:
    """(label, row) for every record of one file. Text files are UTF-8 (a BOM is dropped) unless
    `encoding` names another codec; `setting` says where the user can set it, for the message that
    names a file's real encoding."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"unsupported file type '{path.suffix}' (use {', '.join(sorted(SUFFIXES))})",
                        source=str(path))
    try:
        yield from reader(path, encoding, setting)
    except TextProblem as exc:
        raise DataError(str(exc), source=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror or exc})", source=str(path)) from None


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
        setting = None if spec.builtin else f"the '{spec.name}' entry of {spec.info_file}"
        for path in local_files(spec):
            for label, row in read_file(path, spec.encoding, setting):
                yield str(path), label, row
        return
    yield from _hub_rows(spec, cache_dir)


def _hub_rows(spec: DatasetSpec, cache_dir: str | None) -> Iterator[tuple[str, str, dict[str, Any]]]:
    ds = hub_dataset(spec, cache_dir)
    source = f"{spec.load_from}:{spec.path}"
    for index, row in enumerate(ds):
        yield source, f"record {index}", dict(row)


def hub_dataset(spec: DatasetSpec, cache_dir: str | None = None) -> Any:
    """A hub dataset as `datasets` loads it (memory-mapped from its cache once downloaded)."""
    path = spec.path
    if spec.load_from == "ms_hub":
        if not switched_on(os.environ, "USE_MODELSCOPE_HUB"):
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
    return ds
