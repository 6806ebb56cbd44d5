"""After training: BLEU/ROUGE of generated answers (`predict`) and multiple-choice benchmarks (`eval`)."""

from __future__ import annotations

import sys
from collections.abc import Callable

Log = Callable[[str], None]


def stderr_note(text: str) -> None:
    """Default progress/notes printer for predict and eval when no CLI logger is passed."""
    print(f"tuneforge: {text}", file=sys.stderr, flush=True)
