"""`streaming: true` trains end to end: the stream is read and encoded while training, max_steps ends it,
val_size samples from its start are evaluated, and the adapter is saved."""

from __future__ import annotations

import pytest

from e2e.helpers import log_lines, train


@pytest.mark.slow
def test_streaming_sft_trains_evaluates_and_saves(tmp_path, tiny_path, caplog):
    out = train(tmp_path, streaming=True, buffer_size=16, max_steps=4, logging_steps=1, val_size=4,
                eval_strategy="steps", eval_steps=2, finetuning_type="lora", learning_rate=5e-3, use_cpu=True)
    lines = log_lines(out)
    assert [row["current_steps"] for row in lines if "loss" in row] == [1, 2, 3, 4]
    assert [row["current_steps"] for row in lines if "eval_loss" in row] == [2, 4]
    assert (out / "adapter_model.safetensors").is_file()
    assert "data: streamed while training (identity), 4 eval" in caplog.text
