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
