"""What each training stage needs from the layers below it, in one table.

The data layer (which encoder, which columns), the fast path (padding-free batches) and the
memory estimate (how many sequences a sample puts in a batch) read the stage's facts here
instead of comparing stage names. The stages themselves (their trainers) live in
`tuneforge/stages/`, above these layers; their registry is `tuneforge.stages.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DataKind = Literal["supervised", "pretrain", "pairwise", "kto", "prompts"]


@dataclass(frozen=True)
class StageFacts:
    data: DataKind          # what one encoded sample holds (data/dataset.py)
    padding_free: bool      # batches may be padding-free / packed rows (data/collate.py, model/kernels.py)
    sequences: int = 1      # sequences one sample puts through the model at once (memory estimate)


STAGE_FACTS: dict[str, StageFacts] = {
    "sft": StageFacts("supervised", padding_free=True),
    "pt": StageFacts("pretrain", padding_free=True),
    "rm": StageFacts("pairwise", padding_free=False, sequences=2),   # chosen + rejected in one batch
    "dpo": StageFacts("pairwise", padding_free=False, sequences=2),
    "kto": StageFacts("kto", padding_free=False, sequences=2),       # the batch plus its KL batch
    "ppo": StageFacts("prompts", padding_free=False),
    "grpo": StageFacts("prompts", padding_free=False),
    "rloo": StageFacts("prompts", padding_free=False),
}


def facts(stage: str) -> StageFacts:
    return STAGE_FACTS[stage]
