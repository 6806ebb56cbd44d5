"""Rendered turns -> token ids, tokenizing the whole conversation at once.

Tokenizing the joined text (not piece by piece) gives exactly the ids `apply_chat_template`
gives; character offsets then tell which ids came from which prompt/answer/suffix span.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from tuneforge.data.templates.base import Turn


@dataclass
class TurnIds:
    prompt: list[int]
    answer: list[int]
    suffix: list[int]


def tokenize_turns(tokenizer: Any, turns: list[Turn]) -> list[TurnIds]:
    pieces = [piece for turn in turns for piece in (turn.prompt, turn.answer, turn.suffix)]
    if not getattr(tokenizer, "is_fast", False):
        ids = [tokenizer.encode(p, add_special_tokens=False) if p else [] for p in pieces]
        return [TurnIds(*ids[i:i + 3]) for i in range(0, len(ids), 3)]
    starts, pos = [], 0
    for piece in pieces:
        starts.append(pos)
        pos += len(piece)
    enc = tokenizer("".join(pieces), add_special_tokens=False, return_offsets_mapping=True)
    buckets: list[list[int]] = [[] for _ in pieces]
    for tid, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"]):
        # the last span starting at or before this token's first character owns it
        index = bisect.bisect_right(starts, start) - 1
        while index > 0 and not pieces[index]:
            index -= 1  # empty spans own nothing
        buckets[max(index, 0)].append(tid)
    return [TurnIds(*buckets[i:i + 3]) for i in range(0, len(buckets), 3)]
