"""What tuneforge tells the user: one `logging` logger, printed as `tuneforge: <text>` lines.

Every layer calls `note()` (or the `tuneforge.*` loggers); only the entry points (CLI, web UI)
decide where the lines go. With several processes (torchrun, DeepSpeed, Ray: `RANK` set) only rank 0
prints notes, so a user reads each line once; errors name the rank they come from (`rank_label()`). The text is printed as it is, never through rich markup, so a
`[bracketed]` path or value is never swallowed. Tests read the lines with pytest's `caplog`;
the web UI reads them from the run's log file.
"""

from __future__ import annotations

import logging
import os
import sys

LOGGER = "tuneforge"
PREFIX = "tuneforge: "
logger = logging.getLogger(LOGGER)
logger.setLevel(logging.INFO)  # silent without a handler (library use); the CLI adds one


def note(text: str) -> None:
    """One line for the user (a decision taken, a value changed, a file written)."""
    logger.info(text)


def process_rank() -> int:
    """This process's global rank in a multi-process run (torchrun, DeepSpeed and Ray Train set RANK); 0 alone."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def world_size() -> int:
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def rank_label() -> str:
    """`rank N: ` in a multi-process run (prefixed to an error line, so the user knows which process), else ''."""
    return f"rank {process_rank()}: " if world_size() > 1 else ""


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is at the time (pytest and typer swap it); rank 0 only."""

    def emit(self, record: logging.LogRecord) -> None:
        if process_rank() != 0 and record.levelno < logging.ERROR:
            return  # every rank decides the same things: rank 0 says them
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
