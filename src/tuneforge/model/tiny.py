"""The tiny model tests and the demo train: built here, offline, deterministic, cached.

A byte-level BPE tokenizer is trained on a small bilingual corpus shipped with the package
(plus the built-in datasets' text), and a randomly initialised Qwen2-architecture model is
saved next to it with `save_pretrained`, so everything downstream goes through the real
`from_pretrained` loading code. `model_name_or_path: tuneforge/tiny` resolves to this folder.

Shape: hidden 128, 2 layers, vocab ~3000, tied embeddings. `initializer_range` is 0.2 rather
than Qwen's 0.02: with frozen tied embeddings at std 0.02, LoRA plateaus near loss 5.6 (the
logits cannot grow large enough), while 0.2 lets LoRA reach loss < 0.3 in ~200 steps.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

TINY_NAME = "tuneforge/tiny"
VOCAB_SIZE = 3000
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
# Qwen2's pre-tokenizer pattern (splits digits, letters, punctuation and whitespace runs).
SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# A plain chatml template written for the tiny tokenizer (what Qwen3-Instruct-2507 renders).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
MODEL_SHAPE = dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
                   initializer_range=0.2, rope_theta=10000.0, rms_norm_eps=1e-6)
BUILD_VERSION = "1"


def _corpus_texts() -> list[str]:
    here = Path(__file__).parent
    texts = [(here / "corpus" / "corpus.txt").read_text(encoding="utf-8")]
    builtin = here.parent / "data" / "builtin"
    # a fixed list: datasets added later must not silently change the tokenizer (and every test number)
    for path in (builtin / name for name in ("alpaca_demo.json", "identity.json", "sharegpt_demo.json")):
        texts.append(json.dumps(json.loads(path.read_text(encoding="utf-8")), ensure_ascii=False))
    return texts


def _key() -> str:
    h = hashlib.sha256(BUILD_VERSION.encode())
    for text in _corpus_texts():
        h.update(text.encode())
    h.update(json.dumps(MODEL_SHAPE, sort_keys=True).encode())
    return h.hexdigest()[:16]


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    texts = [line for text in _corpus_texts() for line in text.splitlines() if line.strip()]
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=SPECIAL_TOKENS[1:], model_max_length=4096)
    tokenizer.add_tokens(ADDED_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build(out_dir: str | Path) -> Path:
    """Write tokenizer + random-init Qwen2 model (fp32 safetensors) into out_dir."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    tokenizer = build_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **MODEL_SHAPE)
    config.dtype = "float32"
    torch.manual_seed(0)
    return save_model_dir(Qwen2ForCausalLM(config), tokenizer, out)


def save_model_dir(model, tokenizer, out: Path) -> Path:
    """Model (stopping at the tokenizer's eos, padding with its pad) and tokenizer written whole into
    `out`: a temporary sibling first, renamed into place, so a half-built folder is never used."""
    from transformers.utils import logging as hf_logging

    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # building a test model is not the user's save: no shard bars
    try:
        model.save_pretrained(tmp)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(tmp)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def cached(name: str, build_into: Callable[[Path], Path], marker: str = "config.json") -> Path:
    """The folder `name` in the model cache, written by `build_into(folder)` when its `marker` file is missing."""
    from tuneforge.data.dataset import cache_root

    path = cache_root() / "models" / name
    if not (path / marker).is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        build_into(path)
    return path


def ensure() -> Path:
    """The cached tiny model folder, built on first use (a few seconds)."""
    return cached(f"tiny-{_key()}", build)


if __name__ == "__main__":  # python -m tuneforge.model.tiny [OUT_DIR]
    import sys

    print(build(sys.argv[1]) if len(sys.argv) > 1 else ensure())
