"""Supervised fine-tuning: prompt tokens masked, answers trained (labels built in data/encode/supervised.py)."""

from __future__ import annotations

from typing import Any

from tuneforge.data.dataset import EncodedData
from tuneforge.model.load import Precision
from tuneforge.stages.common import StageResult, padded_collator, run_trainer


def run(args: Any, model: Any, tokenizer: Any, data: EncodedData, precision: Precision,
        resume: str | None = None) -> StageResult:
    return run_trainer(args, model, tokenizer, data, padded_collator(tokenizer, precision), resume)
