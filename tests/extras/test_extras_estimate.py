"""`tuneforge estimate` counts the extras' optimizer states: GaLore/APOLLO/Adam-mini/Muon keep less than AdamW,
BAdam (layer mode) holds states and gradients for one decoder layer only."""

from __future__ import annotations

import pytest

from tuneforge.config.schema import MethodConfig
from tuneforge.model.memory import estimate_memory

# Qwen2.5-1.5B's shape (no download: a config object)
SHAPE = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
             num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)


def _estimate(**method):
    from transformers import Qwen2Config

    return estimate_memory(Qwen2Config(**SHAPE), MethodConfig(finetuning_type="full", **method), tokens=2048,
                           dtype_bytes=2, checkpointing=True, fused_loss=True)


@pytest.mark.parametrize("keys,most", [
    ({"use_galore": True, "galore_rank": 16}, 0.35),
    ({"use_apollo": True, "apollo_rank": 16}, 0.35),
    ({"use_adam_mini": True}, 0.55),
    ({"use_muon": True}, 0.80),
    ({"use_badam": True, "badam_mode": "ratio", "badam_update_ratio": 0.05}, 0.10),
], ids=["galore", "apollo", "adam-mini", "muon", "badam-ratio"])
def test_extra_optimizers_need_less_optimizer_memory(keys, most):
    adamw, extra = _estimate(), _estimate(**keys)
    assert 0 < extra.optimizer_bytes < most * adamw.optimizer_bytes
    assert extra.peak_bytes < adamw.peak_bytes
    assert any(word in " ".join(extra.notes) for word in ("GaLore", "APOLLO", "Adam-mini", "Muon", "BAdam"))


def test_badam_layer_mode_keeps_one_layers_states_and_gradients():
    adamw, badam = _estimate(), _estimate(use_badam=True)
    # 28 layers plus the embedding: one layer's states and grads are well under a tenth of all of them
    assert badam.optimizer_bytes < 0.05 * adamw.optimizer_bytes
    assert badam.grads_bytes < 0.05 * adamw.grads_bytes
    assert badam.peak_bytes < 0.8 * adamw.peak_bytes
