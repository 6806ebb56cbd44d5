"""Config values only the data layer can judge (template names, built-in datasets), checked when the
config is read, before any file is opened. `config/` sits below `data/` and cannot know them."""

from __future__ import annotations

import difflib

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.data.registry import builtin_names
from tuneforge.data.templates import template_names


def check_names(cfg: RunConfig, where: str) -> None:
    d = cfg.data
    if d.template is not None and d.template not in template_names():
        guess = difflib.get_close_matches(d.template, template_names(), n=1, cutoff=0.5)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        raise ConfigError(f"{where}: 'template': unknown template '{d.template}'{hint} "
                          f"(known: {', '.join(template_names())})")
    if cfg.train.do_train and not d.dataset:
        raise ConfigError(f"{where}: 'dataset' is required for training (a name from dataset_info.json "
                          f"or a built-in one: {', '.join(builtin_names())})")
