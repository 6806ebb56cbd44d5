"""What template tests (data/test_templates.py) and export tests share: the package's one probe set
(tuneforge.data.templates.probes) and test tokenizers of each model family."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from tuneforge.data.templates.probes import CHAT_PROBES as PROBES
from tuneforge.data.templates.probes import SYSTEM, chat

__all__ = ["FAMILIES", "PROBES", "SYSTEM", "TEMPLATE_FAMILY", "chat", "family_tokenizer"]


@dataclass(frozen=True)
class Family:
    bos: str | None
    eos: str
    tokens: tuple[str, ...] = ()


# Special tokens and bos/eos as the real families have them. The tiny tokenizer already has
# <|endoftext|>, <|im_start|>, <|im_end|> (eos) and <think>, <tool_call>, <tool_response> ...
FAMILIES: dict[str, Family] = {
    "qwen": Family(None, "<|im_end|>"),
    "chatml-bos": Family("<s>", "</s>"),
    "llama3": Family("<|begin_of_text|>", "<|eot_id|>", ("<|start_header_id|>", "<|end_header_id|>")),
    "llama2": Family("<s>", "</s>", ("[INST]", "[/INST]")),
    "mistral": Family("<s>", "</s>", ("[INST]", "[/INST]")),
    "gemma": Family("<bos>", "<eos>", ("<start_of_turn>", "<end_of_turn>")),
    "gemma-nobos": Family(None, "<eos>", ("<start_of_turn>", "<end_of_turn>")),
    "phi": Family("<s>", "<|endoftext|>", ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")),
    "deepseek": Family("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                       ("<｜User｜>", "<｜Assistant｜>")),
    "glm4": Family(None, "<|endoftext|>", ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>",
                                            "<|observation|>")),
    "alpaca": Family("<s>", "</s>"),
    "tiny": Family(None, "<|im_end|>"),
}

# The family whose tokenizer each built-in template is meant for.
TEMPLATE_FAMILY = {
    "qwen": "qwen", "qwen3": "qwen", "qwen3_nothink": "qwen", "chatml": "chatml-bos", "llama3": "llama3",
    "llama2": "llama2", "mistral": "mistral", "gemma": "gemma", "phi": "phi", "deepseek3": "deepseek",
    "deepseekr1": "deepseek", "glm4": "glm4", "alpaca": "alpaca", "default": "tiny", "empty": "tiny",
    "qwen2_vl": "qwen", "qwen3_vl": "qwen", "qwen3_vl_nothink": "qwen", "llava": "tiny",
}


def family_tokenizer(tiny_tokenizer, family: str):
    """The tiny tokenizer given a family's special tokens and bos/eos, without a chat_template."""
    spec = FAMILIES[family]
    tok = copy.deepcopy(tiny_tokenizer)
    new = [t for t in (spec.bos, spec.eos, *spec.tokens) if t and t not in tok.get_vocab()]
    if new:
        tok.add_tokens(new, special_tokens=True)
    tok.bos_token, tok.eos_token, tok.chat_template = spec.bos, spec.eos, None
    return tok
