"""Training stages: one module per stage (sft, pt, rm, dpo, kto, ppo, grpo, rloo), each with `run(ctx)`.

A stage may also define `build_model(cfg, precision)` when it needs something other than a causal
LM with the fine-tuning method applied (the reward model's value head, for example).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.data.dataset import EncodedData
from tuneforge.data.templates import BoundTemplate
from tuneforge.model.kernels import FastPath
from tuneforge.model.load import Precision


@dataclass
class StageContext:
    """Everything a stage needs, validated and loaded before it starts."""

    cfg: RunConfig
    args: Any  # transformers.TrainingArguments, already checked
    model: Any
    tokenizer: Any
    template: BoundTemplate
    data: EncodedData
    precision: Precision
    resume: str | None = None
    fast: FastPath | None = None  # batching / attention / loss chosen for sft and pt (model/kernels.py)


def stage_module(stage: str) -> ModuleType:
    name = f"tuneforge.stages.{stage}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise  # a real import error inside the stage must not look like a missing stage
        raise ConfigError(f"stage '{stage}' is not supported yet") from None
