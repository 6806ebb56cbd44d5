"""The tiny model is real: built offline, deterministic, loaded through from_pretrained."""

from __future__ import annotations

import hashlib

from tuneforge.model import tiny


def _digest(path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes() + (path / "tokenizer.json").read_bytes()).hexdigest()


def test_build_is_deterministic_and_loads(tmp_path, tiny_path):
    again = tiny.build(tmp_path / "tiny")
    assert _digest(again) == _digest(tiny_path)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(again)
    tokenizer = AutoTokenizer.from_pretrained(again)
    assert model.config.model_type == "qwen2" and model.config.hidden_size == 128
    assert model.config.num_hidden_layers == 2 and 2500 <= len(tokenizer) <= 3500
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
    # bilingual: common Chinese and English words are single tokens or close to it
    assert len(tokenizer("你是谁")["input_ids"]) <= 2
    assert len(tokenizer("Who are you?")["input_ids"]) <= 5


def test_cached_under_tuneforge_tiny(tiny_path):
    from tuneforge.model.load import resolve_model_path

    assert resolve_model_path("tuneforge/tiny") == str(tiny_path)
    assert (tiny_path / "config.json").is_file()
