"""After training: BLEU/ROUGE of generated answers (`predict`) and multiple-choice benchmarks (`eval`)."""

from __future__ import annotations

from collections.abc import Callable

from tuneforge.log import note as stderr_note  # noqa: F401 - the default `log` of predict and eval

Log = Callable[[str], None]
