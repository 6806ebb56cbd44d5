"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class TuneforgeError(Exception):
    """Base class: a problem in the user's config, data or environment (not a bug in tuneforge)."""


class ConfigError(TuneforgeError):
    """A config key, value or path is wrong."""


class DataError(TuneforgeError):
    """A dataset, file or record is wrong."""

    def __init__(self, message: str, *, source: str | None = None, record: int | str | None = None,
                 key: str | None = None):
        self.source, self.record, self.key = source, record, key
        where = []
        if source:
            where.append(str(source))
        if record is not None:
            where.append(f"record {record}" if isinstance(record, int) else str(record))
        text = f"{' '.join(where)}: {message}" if where else message
        if key and f"'{key}'" not in message:
            text += f" (key '{key}')"
        super().__init__(text)
