"""Checks shared by the format converters: every problem names its record and key."""

from __future__ import annotations

import json
from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.textfile import TextProblem, parse_json


def text_field(row: dict[str, Any], column: str | None, where: str, *, required: bool, what: str = "") -> str | None:
    """A string column: missing/null/empty are errors when required; other types always are."""
    if column is None:
        return None
    if column not in row:
        if required:
            raise DataError(f"'{column}' is missing{what}", source=where, key=column)
        return None
    value = row[column]
    if value is None:
        if required:
            raise DataError(f"'{column}' is null{what}", source=where, key=column)
        return None
    if not isinstance(value, str):
        raise DataError(f"'{column}' must be a string, got {type(value).__name__}", source=where, key=column)
    if required and not value.strip():
        raise DataError(f"'{column}' is empty{what}", source=where, key=column)
    return value


def tools_field(row: dict[str, Any], column: str | None, where: str) -> str | None:
    """Tool descriptions may be a JSON string or a JSON value: a list of tool objects, or one; normalise
    to a JSON string."""
    if column is None or row.get(column) in (None, "", []):
        return None
    value = row[column]
    if isinstance(value, str):
        try:
            parsed = parse_json(value)
        except TextProblem:
            raise DataError(f"'{column}' is not valid JSON", source=where, key=column) from None
        _check_tools(parsed, column, where)
        return value
    if isinstance(value, (list, dict)):
        _check_tools(value, column, where)
        return json.dumps(value, ensure_ascii=False)
    raise DataError(f"'{column}' must be a JSON string or list, got {type(value).__name__}", source=where,
                    key=column)


def _check_tools(tools: Any, column: str, where: str) -> None:
    if isinstance(tools, list) and all(isinstance(tool, dict) for tool in tools) or isinstance(tools, dict):
        return
    raise DataError(f"'{column}' must be a list of tool descriptions (JSON objects), got {tools!r:.60}",
                    source=where, key=column)


def kto_tag(row: dict[str, Any], column: str | None, where: str) -> bool | None:
    """KTO's desirable/undesirable flag: a JSON boolean (or the strings true/false)."""
    if column is None:
        return None
    if column not in row or row[column] is None:
        raise DataError(f"'{column}' is missing (KTO needs a true/false label per record)", source=where, key=column)
    value = row[column]
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise DataError(f"'{column}' must be true or false, got {value!r}", source=where, key=column)
    return value


def check_pair(chosen: str, rejected: str, where: str, keys: tuple[str, str]) -> None:
    if chosen.strip() == rejected.strip():
        raise DataError(f"'{keys[0]}' and '{keys[1]}' are the same answer; a preference pair needs two different "
                        "answers", source=where, key=keys[0])


PLACEHOLDERS = {"images": "<image>", "videos": "<video>"}


def media_field(row: dict[str, Any], spec: Any, key: str, where: str) -> list[str]:
    """The `images`/`videos` column (LLaMA-Factory's): one path or a list of paths, relative to the
    dataset's folder (where its dataset_info.json is) or absolute; a file that is not there is an error
    naming it."""
    from pathlib import Path

    column = spec.column(key) or key
    value = row.get(column)
    if value in (None, "", []):
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item.strip() for item in items):
        raise DataError(f"'{column}' must be a file path or a list of file paths", source=where, key=column)
    base = Path(spec.info_file).parent if spec.info_file else Path.cwd()
    paths = []
    for item in items:
        path = Path(item).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise DataError(f"'{column}' names {item}, which does not exist (looked for {path})", source=where,
                            key=column)
        paths.append(str(path))
    return paths


def attach_media(example: Any, row: dict[str, Any], spec: Any, where: str) -> Any:
    """Fill example.images/videos from the record and check that each <image>/<video> placeholder in the
    conversation has exactly one file (the model's image tokens go where the placeholders are). Records
    without the column are text records: a literal "<image>" in their text is left alone."""
    texts = [m.content for m in example.messages]
    for key, mark in PLACEHOLDERS.items():
        if (spec.column(key) or key) not in row:
            continue
        files = media_field(row, spec, key, where)
        marks = sum(text.count(mark) for text in texts)
        if marks != len(files):
            column = spec.column(key) or key
            raise DataError(f"has {marks} {mark} placeholder{'s' * (marks != 1)} in its messages but {len(files)} "
                            f"file{'s' * (len(files) != 1)} in '{column}'; each {mark} needs one file, in order",
                            source=where, key=column)
        setattr(example, key, files)
    return example
