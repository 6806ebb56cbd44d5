"""Continued pre-training: documents joined with eos and cut into cutoff_len blocks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def encode_pretrain(tokenizer: Any, texts: Iterable[str], cutoff_len: int) -> list[list[int]]:
    """Every document ends with eos (so the model learns where documents end); the stream is cut
    into blocks of exactly cutoff_len tokens; the last, shorter block is kept, not thrown away."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=True)["input_ids"] + eos
    return [stream[i:i + cutoff_len] for i in range(0, len(stream), cutoff_len)]
