"""How every command reads its config: YAML + overrides, validated once (config/load.py), then the
values only the data layer can judge (data/validate.py); the notes are printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.config.schema import RunConfig


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> RunConfig:
    """`path` may be None or a first `key=value` when the keys come as flags (cli/flags.py)."""
    from tuneforge.cli.flags import split_config
    from tuneforge.config.errors import ConfigError
    from tuneforge.config.load import load
    from tuneforge.data.validate import check_names
    from tuneforge.log import note

    path, overrides = split_config(path, overrides or [])
    if path is None and base is None and not any(o.partition("=")[0].strip("- ") != "do_train" for o in overrides):
        raise ConfigError("give a YAML config file (tuneforge train my_config.yaml) or the keys as flags "
                          "(tuneforge train --model_name_or_path ... --dataset ...)")
    cfg, notes = load(path, overrides, base=base)
    for text in notes:
        note(text)
    check_names(cfg, str(path) if path is not None else "config")
    return cfg
