"""What tuneforge tells the user: one `logging` logger, printed as `tuneforge: <text>` lines.

Every layer calls `note()` (or the `tuneforge.*` loggers); only the entry points (CLI, web UI)
decide where the lines go. The text is printed as it is, never through rich markup, so a
`[bracketed]` path or value is never swallowed. Tests read the lines with pytest's `caplog`;
the web UI reads them from the run's log file.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "tuneforge"
PREFIX = "tuneforge: "
logger = logging.getLogger(LOGGER)
logger.setLevel(logging.INFO)  # silent without a handler (library use); the CLI adds one


def note(text: str) -> None:
    """One line for the user (a decision taken, a value changed, a file written)."""
    logger.info(text)


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is at the time (pytest and typer swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(PREFIX + record.getMessage() + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never end a run
            self.handleError(record)


def to_stderr(level: int = logging.INFO) -> None:
    """Print the `tuneforge` logger's lines on stderr (idempotent; the CLI calls it once)."""
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(level)
