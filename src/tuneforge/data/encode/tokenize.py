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
    enc = tokenizer("".join(pieces), add_special_tokens=False, return_offsets_mapping=True)
    return tokenize_turns_ids(enc["input_ids"], enc["offset_mapping"], pieces)


def tokenize_turns_ids(ids: list[int], offsets: list[tuple[int, int]], pieces: list[str]) -> list[TurnIds]:
    """The ids of the joined pieces split into pieces, token by token."""
    starts, pos = [], 0
    for piece in pieces:
        starts.append(pos)
        pos += len(piece)
    buckets: list[list[int]] = [[] for _ in pieces]
    for tid, (start, _end) in zip(ids, offsets):
        # the last span starting at or before this token's first character owns it
        index = bisect.bisect_right(starts, start) - 1
        while index > 0 and not pieces[index]:
            index -= 1  # empty spans own nothing
        buckets[max(index, 0)].append(tid)
    return [TurnIds(*buckets[i:i + 3]) for i in range(0, len(buckets), 3)]


def _split_ids(ids: list[int], offsets: list[tuple[int, int]], pieces: list[str]) -> list[TurnIds]:
    """One tokenized conversation's ids split into its pieces by character offsets, by `tokenize_turns`'
    rule (a token belongs to the last non-empty piece after the first that starts at or before its
    first character, else to the first piece), with one bisection per piece instead of one per token
    (token starts never decrease; the caller checks)."""
    token_starts = [start for start, _end in offsets]
    if token_starts != sorted(token_starts):  # not in order (no tokenizer we know): the per-token rule
        return tokenize_turns_ids(ids, offsets, pieces)
    cuts = [(0, 0)]  # (piece index, its first token)
    pos = len(pieces[0])
    for index in range(1, len(pieces)):
        if pieces[index]:
            cuts.append((index, bisect.bisect_left(token_starts, pos)))
        pos += len(pieces[index])
    buckets: list[list[int]] = [[] for _ in pieces]
    bounds = [first for _index, first in cuts] + [len(ids)]
    for (index, _first), begin, end in zip(cuts, bounds, bounds[1:]):
        buckets[index] = ids[begin:end]
    return [TurnIds(*buckets[i:i + 3]) for i in range(0, len(buckets), 3)]


def tokenize_turns_batch(tokenizer: Any, conversations: list[list[Turn]]) -> list[list[TurnIds]]:
    """`tokenize_turns` for many conversations with one tokenizer call (the Rust tokenizer encodes the
    whole batch at once), giving exactly its ids."""
    if not getattr(tokenizer, "is_fast", False) or not conversations:
        return [tokenize_turns(tokenizer, turns) for turns in conversations]
    pieces = [[piece for turn in turns for piece in (turn.prompt, turn.answer, turn.suffix)] for turns in conversations]
    enc = tokenizer(["".join(p) for p in pieces], add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for ids, offsets, parts in zip(enc["input_ids"], enc["offset_mapping"], pieces):
        out.append(_split_ids(ids, offsets, parts))
    return out
