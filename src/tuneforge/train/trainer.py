"""The Trainer for sft and pt: transformers' Trainer plus a data-wait clock.

- the chunked loss (no full logits) is not here: stages/sft.py attaches it to the model's own
  forward (model/fused_loss.attach_chunked_loss), so Trainer's compute_loss, its
  `num_items_in_batch` normalisation and loss scaling, and every wrapper (DDP, autocast) apply
  unchanged. Evaluation uses it too (loss only: no logits are gathered).
- every log line carries `data_wait_s`: seconds spent so far waiting for the next batches
  (`get_batch_samples` is where Trainer pulls them from the DataLoader), so a starving GPU shows.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import Trainer


class CausalLMTrainer(Trainer):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.data_wait = 0.0

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> Any:
        started = time.perf_counter()
        try:
            return super().get_batch_samples(epoch_iterator, num_batches, device)
        finally:
            self.data_wait += time.perf_counter() - started

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:
            logs["data_wait_s"] = round(self.data_wait, 3)
        super().log(logs, *args, **kwargs)
