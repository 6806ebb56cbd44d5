"""PiSSA: at step 0 the adapted model equals the base (the principal part moved into the adapter, the
residual left in the base); after training, the converted adapter on the untouched base reproduces the
trained model (pissa_convert), with exact SVD and with fast SVD alike."""

from __future__ import annotations

import pytest
import torch

from extras.helpers import batch, build, steps


def _logits(model, data) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=data["input_ids"]).logits


@pytest.fixture(scope="module")
def data(tiny_tokenizer):
    return batch(tiny_tokenizer)


@pytest.fixture(scope="module")
def base_logits(tiny_path, data):
    from transformers import AutoModelForCausalLM

    return _logits(AutoModelForCausalLM.from_pretrained(tiny_path), data)


@pytest.mark.parametrize("pissa_iter", [-1, 4], ids=["exact-svd", "fast-svd"])
def test_pissa_model_equals_the_base_at_step_0_and_converts_back_after_training(tmp_path, tiny_path, data,
                                                                                  base_logits, pissa_iter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, TrainerControl, TrainerState

    from tuneforge.train.pissa import CONVERTED, PissaConvert

    _, trainer = build(tmp_path, pissa_init=True, pissa_iter=pissa_iter, pissa_convert=True, learning_rate=1e-2)
    model = trainer.model
    assert str(model.peft_config["default"].init_lora_weights).startswith("pissa")
    # the base really changed (the principal part moved into the adapter) ...
    residual = dict(model.named_parameters())["base_model.model.model.layers.0.mlp.up_proj.base_layer.weight"]
    original = AutoModelForCausalLM.from_pretrained(tiny_path).model.layers[0].mlp.up_proj.weight
    assert not torch.allclose(residual, original, atol=1e-3)
    # ... yet base + adapter is the original model at step 0
    torch.testing.assert_close(_logits(model, data), base_logits, atol=2e-4, rtol=1e-4)

    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, PissaConvert))
    state, control = TrainerState(), TrainerControl()
    callback.on_train_begin(trainer.args, state, control, model=model)
    losses = steps(trainer, data, 4)
    assert losses[-1] < losses[0]
    trained = _logits(model, data)
    assert not torch.allclose(trained, base_logits, atol=1e-2)  # training moved it
    callback.on_train_end(trainer.args, state, control, model=model)

    converted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_path),
                                          str(tmp_path / "out" / CONVERTED))
    assert converted.peft_config["default"].r == 2 * 8  # peft's conversion doubles the rank
    torch.testing.assert_close(_logits(converted, data), trained, atol=2e-4, rtol=1e-4)


def test_pissa_needs_lora(tmp_path):
    from extras.helpers import config
    from tuneforge.config.errors import ConfigError

    with pytest.raises(ConfigError, match="pissa_init is for finetuning_type: lora"):
        config(tmp_path, pissa_init=True, finetuning_type="freeze")


def test_pissa_is_refused_where_the_reference_is_the_adapter_switched_off(tmp_path):
    from extras.helpers import config
    from tuneforge.config.errors import ConfigError

    with pytest.raises(ConfigError, match="pissa_init: stage dpo uses the model with its adapter switched off"):
        config(tmp_path, pissa_init=True, stage="dpo")
    config(tmp_path, pissa_init=True, stage="dpo", pref_loss="orpo")  # no reference model: accepted


def test_pissa_convert_through_tuneforge_train(tmp_path, caplog):
    """The real run: the converted adapter (rank doubled) lands in output_dir/pissa_converted, and a line says so."""
    import json

    from e2e.helpers import train

    out = train(tmp_path, pissa_init=True, pissa_convert=True, max_steps=2)
    config = json.loads((out / "pissa_converted" / "adapter_config.json").read_text())
    assert config["r"] == 16 and config["init_lora_weights"] is True
    assert (out / "pissa_converted" / "adapter_model.safetensors").is_file()
    assert any("pissa_converted (use it for chat, export and merging)" in r.getMessage() for r in caplog.records)
