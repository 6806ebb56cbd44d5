"""Tiny random models of other architectures, sharing the tiny model's tokenizer.

The fast path must give the padded loss on every architecture we accept, and the architectures
differ exactly where padding-free rows are delicate: sliding windows (Mistral, Phi-3, Qwen2/3 with
`use_sliding_window`, Gemma 2/3, gpt-oss), attention logit softcapping (Gemma 2), attention sinks
(gpt-oss), fused projections (Phi-3), q/k norms (Qwen3, Gemma 3). Each entry here is one such
model at a toy size, with the window smaller than the samples and the softcap small enough to
matter, saved with `save_pretrained` like the tiny model (tests and bench/gpu_check.py load them
through the real `from_pretrained`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=2048, initializer_range=0.2,
              tie_word_embeddings=True)
WINDOW = 8  # tokens a sliding layer sees: shorter than most samples, so the window is exercised

# name -> (transformers config class, its arguments beyond COMMON)
ARCHS: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen2": ("Qwen2Config", {}),
    "qwen2_sliding": ("Qwen2Config", dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1)),
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", dict(sliding_window=WINDOW)),
    "phi3": ("Phi3Config", dict(sliding_window=WINDOW)),
    "qwen3": ("Qwen3Config", {}),
    "qwen3_sliding": ("Qwen3Config", dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1)),
    "gemma2": ("Gemma2Config", dict(sliding_window=WINDOW, attn_logit_softcapping=1.0, final_logit_softcapping=5.0,
                                    query_pre_attn_scalar=16, layer_types=["sliding_attention", "full_attention"])),
    "gemma3": ("Gemma3TextConfig", dict(sliding_window=WINDOW, query_pre_attn_scalar=16,
                                        layer_types=["sliding_attention", "full_attention"])),
    "gpt_oss": ("GptOssConfig", dict(sliding_window=WINDOW, num_local_experts=4, num_experts_per_tok=2,
                                     layer_types=["sliding_attention", "full_attention"])),
}
BUILD_VERSION = "1"


def _key(name: str) -> str:
    spec = {"arch": ARCHS[name], "common": COMMON, "version": BUILD_VERSION}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def build_arch(name: str, out_dir: str | Path) -> Path:
    """Write the tiny tokenizer and a random-init `name` model (fp32 safetensors) into out_dir."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.model import tiny

    class_name, extra = ARCHS[name]
    tokenizer = AutoTokenizer.from_pretrained(tiny.ensure())
    ids = {"vocab_size": len(tokenizer), "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    config = getattr(transformers, class_name)(**{**COMMON, **extra, **ids})
    config.dtype = "float32"
    torch.manual_seed(0)
    return tiny.save_model_dir(AutoModelForCausalLM.from_config(config), tokenizer, Path(out_dir))


def ensure_arch(name: str) -> Path:
    """The cached folder of the tiny `name` model, built on first use (a second or two)."""
    from tuneforge.data.dataset import cache_root

    path = cache_root() / "models" / f"tiny-{name}-{_key(name)}"
    if not (path / "config.json").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        build_arch(name, path)
    return path
