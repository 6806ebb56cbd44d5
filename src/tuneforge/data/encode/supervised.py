"""Supervised encoding: prompt tokens masked with -100, answers (ending in the stop token) trained.

Truncation when a conversation exceeds cutoff_len keeps both sides of every kept turn: the
budget is shared between prompt and answer in proportion to their lengths; the prompt keeps
its head (bos, system header) and tail (assistant header); the answer keeps its beginning.
Turns that no longer fit are dropped (the earliest ones when mask_history is on, since only
the last answer trains then).
"""

from __future__ import annotations

from collections.abc import Callable

from tuneforge.data.encode.tokenize import TurnIds
from tuneforge.data.labels import IGNORE_INDEX


def cut_prompt(ids: list[int], keep: int) -> list[int]:
    if keep >= len(ids):
        return ids
    head = keep // 2
    return ids[:head] + ids[len(ids) - (keep - head):]


def encode_supervised(turns: list[TurnIds], cutoff_len: int, *, train_on_prompt: bool = False,
                      mask_history: bool = False, cut: Callable[[list[int], int], list[int]] = cut_prompt
                      ) -> tuple[list[int], list[int]] | None:
    """-> (input_ids, labels), or None when nothing trainable fits in cutoff_len. `cut` shortens a prompt to
    a number of tokens (samples with images pass one that keeps the image tokens whole)."""
    order = list(range(len(turns)))
    if mask_history:
        order.reverse()
    budget = cutoff_len
    kept: dict[int, tuple[list[int], list[int], list[int]]] = {}
    for index in order:
        turn = turns[index]
        prompt, answer, suffix = turn.prompt, turn.answer, turn.suffix
        need = len(prompt) + len(answer) + len(suffix)
        if need <= budget:
            kept[index] = (prompt, answer, suffix)
            budget -= need
            continue
        if len(prompt) + len(answer) > budget:
            total = len(prompt) + len(answer)
            answer_keep = min(len(answer), max(budget - len(prompt), budget * len(answer) // total))
            prompt_keep = min(len(prompt), budget - answer_keep)
            if answer_keep <= 0 or (prompt_keep <= 0 and prompt):
                break
            prompt, answer = cut(prompt, prompt_keep), answer[:answer_keep]
        kept[index] = (prompt, answer, [])
        break
    input_ids: list[int] = []
    labels: list[int] = []
    last = max(kept) if kept else -1
    trained = False  # token ids are never IGNORE_INDEX: a sample trains iff a kept trained span is non-empty
    for index in sorted(kept):
        prompt, answer, suffix = kept[index]
        trains = not mask_history or index == last
        input_ids += prompt + answer + suffix
        labels += (prompt if train_on_prompt and trains else [IGNORE_INDEX] * len(prompt))
        labels += answer if trains else [IGNORE_INDEX] * len(answer)
        labels += [IGNORE_INDEX] * len(suffix)
        trained = trained or (trains and bool(answer or (train_on_prompt and prompt)))
    return (input_ids, labels) if trained else None
