"""The Trainer for sft and pt: transformers' Trainer plus the chunked loss and a data-wait clock.

- `fused_loss`: the loss comes from model/fused_loss.py (no full logits) instead of the model's
  forward; same shift, same -100s, same normalisation by `num_items_in_batch`, so the numbers
  are those of the standard path. Evaluation uses it too (loss only: no logits are gathered).
- every log line carries `data_wait_s`: seconds spent so far waiting for the next batches
  (`get_batch_samples` is where Trainer pulls them from the DataLoader), so a starving GPU shows.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import Trainer

from tuneforge.model.fused_loss import causal_lm_loss


class CausalLMTrainer(Trainer):
    def __init__(self, *args: Any, fused_loss: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fused_loss = fused_loss
        self.data_wait = 0.0

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if not self.fused_loss or return_outputs or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        # accelerate applies mixed precision by wrapping model.forward; the decoder is called
        # directly here, so autocast is entered explicitly (else bf16 runs would compute in fp32)
        with self.accelerator.autocast():
            loss = causal_lm_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as Trainer does: the count is global
        return loss

    def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> Any:
        if not self.fused_loss or "labels" not in inputs:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        import torch

        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.accelerator.autocast():
            loss = causal_lm_loss(model, inputs)
        return loss.detach(), None, None

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
