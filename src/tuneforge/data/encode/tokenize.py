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


def _backend(tokenizer: Any) -> Any | None:
    """The Rust tokenizer behind a fast tokenizer when calling it directly gives exactly the ids the
    tokenizer's own call gives (no truncation or padding set on it, special tokens matched as the wrapper
    would), else None. Why call it directly: the wrapper turns every encoding into a dict of Python lists
    (ids, type ids, masks, offsets), which cost as much as a third of the encoding itself on big datasets."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False) or backend.truncation or backend.padding:
        return None
    if backend.encode_special_tokens != bool(getattr(tokenizer, "split_special_tokens", False)):
        return None
    return backend


def _first_tokens(encoding: Any, pieces: list[str]) -> list[tuple[int, int]] | None:
    """(piece index, its first token) for the first piece and every later non-empty one, by `tokenize_turns`'
    rule (a token belongs to the last non-empty piece starting at or before its first character), read off
    the encoding at each piece's first character only; None when the rule cannot be read there (a character
    no token covers, e.g. one a normalizer removed): the caller then splits token by token."""
    cuts = [(0, 0)]
    pos, count = len(pieces[0]), len(encoding.ids)
    for index in range(1, len(pieces)):
        if not pieces[index]:
            continue
        token = encoding.char_to_token(pos)
        if token is None:
            return None
        if encoding.token_to_chars(token)[0] < pos:  # a token across the boundary belongs to the earlier piece
            token += 1
        if token < count and encoding.token_to_chars(token)[0] < pos:
            return None
        cuts.append((index, token))
        pos += len(pieces[index])
    return cuts


def _pieces_ids(encoding: Any, pieces: list[str]) -> list[TurnIds]:
    ids = encoding.ids
    cuts = _first_tokens(encoding, pieces)
    if cuts is None:
        return tokenize_turns_ids(ids, encoding.offsets, pieces)
    buckets: list[list[int]] = [[] for _ in pieces]
    bounds = [first for _index, first in cuts] + [len(ids)]
    for (index, _first), begin, end in zip(cuts, bounds, bounds[1:]):
        buckets[index] = ids[begin:end]
    return [TurnIds(*buckets[i:i + 3]) for i in range(0, len(buckets), 3)]


def tokenize_turns_batch(tokenizer: Any, conversations: list[list[Turn]]) -> list[list[TurnIds]]:
    """`tokenize_turns` for many conversations with one tokenizer call (the Rust tokenizer encodes the
    whole batch at once), giving exactly its ids."""
    backend = _backend(tokenizer)
    if backend is None or not conversations:
        return [tokenize_turns(tokenizer, turns) for turns in conversations]
    pieces = [[piece for turn in turns for piece in (turn.prompt, turn.answer, turn.suffix)] for turns in conversations]
    encodings = backend.encode_batch(["".join(p) for p in pieces], add_special_tokens=False)
    return [_pieces_ids(encoding, parts) for encoding, parts in zip(encodings, pieces)]
