"""How every command reads its config: YAML + overrides, validated once (config/load.py), then the
values only the data layer can judge (data/validate.py); the notes are printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.config.schema import RunConfig


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> RunConfig:
    from tuneforge.config.load import load
    from tuneforge.data.validate import check_names
    from tuneforge.log import note

    cfg, notes = load(path, overrides, base=base)
    for text in notes:
        note(text)
    check_names(cfg, str(path) if path is not None else "config")
    return cfg
