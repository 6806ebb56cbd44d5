"""The promise of the demo: each method teaches the tiny model its new name, in English and Chinese."""

from __future__ import annotations

import pytest

from e2e.helpers import answers, final_loss, train

METHODS = {
    "lora": dict(finetuning_type="lora", lora_rank=16, learning_rate=5e-3, num_train_epochs=15),
    "freeze": dict(finetuning_type="freeze", freeze_trainable_layers=1, freeze_extra_modules="embed_tokens",
                   learning_rate=3e-3, num_train_epochs=10),
    "full": dict(finetuning_type="full", learning_rate=2e-3, num_train_epochs=8),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_identity_is_learned(method, tmp_path):
    out = train(tmp_path, **METHODS[method])
    assert final_loss(out) < 0.3
    if method == "lora":
        assert (out / "adapter_model.safetensors").is_file()
        got = answers("tuneforge/tiny", str(out), ["Who are you?", "你是谁"])
    else:
        assert (out / "model.safetensors").is_file()
        got = answers(str(out), None, ["Who are you?", "你是谁"])
    assert all("Forge" in answer for answer in got), got
