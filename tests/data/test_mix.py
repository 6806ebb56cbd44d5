"""mix_strategy (LLaMA-Factory's key): several datasets as one training set."""

from __future__ import annotations

from tuneforge.data.example import Example, Message
from tuneforge.data.loader import mix


def examples(tag: str, n: int) -> list[Example]:
    return [Example(messages=[Message("user", f"{tag}{i}"), Message("assistant", "ok")]) for i in range(n)]


def tags(rows: list[Example]) -> list[str]:
    return [row.messages[0].content for row in rows]


def test_concat_keeps_datasets_in_order():
    assert tags(mix([examples("a", 2), examples("b", 3)], "concat")) == ["a0", "a1", "b0", "b1", "b2"]


def test_interleave_under_stops_with_the_smallest():
    assert tags(mix([examples("a", 2), examples("b", 3)], "interleave_under")) == ["a0", "b0", "a1", "b1"]


def test_interleave_over_runs_to_the_largest_and_repeats_the_others():
    assert tags(mix([examples("a", 2), examples("b", 3)], "interleave_over")) == ["a0", "b0", "a1", "b1", "a0", "b2"]
