"""Alpaca records (instruction, input, output, system, history) -> Example."""

from __future__ import annotations

from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.data.example import Example, Message
from tuneforge.data.formats.common import attach_media, check_pair, kto_tag, text_field, tools_field
from tuneforge.data.registry import DatasetSpec

NEEDS = " (alpaca needs {p} and {r})"


def convert(row: dict[str, Any], spec: DatasetSpec, stage: str, where: str) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"expected an object, got {type(row).__name__}", source=where)
    prompt_col, query_col, response_col = spec.column("prompt"), spec.column("query"), spec.column("response")
    if stage == "pt":
        col = prompt_col if prompt_col in row or "text" not in row else "text"
        text = text_field(row, col, where, required=True, what=" (pre-training reads one text column)")
        query = text_field(row, query_col, where, required=False) if col == prompt_col else None
        return Example(text="\n".join(filter(None, [text, query])), source=where)

    chosen_col, rejected_col = spec.column("chosen") or "chosen", spec.column("rejected") or "rejected"
    if spec.ranking:
        needs = f" (an alpaca preference record needs {prompt_col}, {chosen_col} and {rejected_col})"
    else:
        needs = NEEDS.format(p=prompt_col, r=response_col)
    prompt = text_field(row, prompt_col, where, required=True, what=needs)
    query = text_field(row, query_col, where, required=False)
    response = None if spec.ranking else text_field(row, response_col, where, required=True, what=needs)
    messages: list[Message] = []
    history_col = spec.column("history")
    if history_col and row.get(history_col):
        history = row[history_col]
        if not isinstance(history, list):
            raise DataError(f"'{history_col}' must be a list of [instruction, response] pairs", source=where,
                            key=history_col)
        for turn, pair in enumerate(history):
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(x, str) and x.strip() for x in pair)):
                raise DataError(f"'{history_col}' turn {turn} must be a pair of non-empty strings",
                                source=where, key=history_col)
            messages += [Message("user", pair[0]), Message("assistant", pair[1])]
    user = prompt if not query else f"{prompt}\n{query}"
    messages.append(Message("user", user))
    system = text_field(row, spec.column("system"), where, required=False)
    example = Example(messages=messages, system=system or None, tools=tools_field(row, spec.column("tools"), where),
                      source=where)
    if spec.ranking:
        chosen = text_field(row, chosen_col, where, required=True, what=needs)
        rejected = text_field(row, rejected_col, where, required=True, what=needs)
        check_pair(chosen, rejected, where, (chosen_col, rejected_col))
        example.chosen, example.rejected = Message("assistant", chosen), Message("assistant", rejected)
        return attach_media(example, row, spec, where)
    example.messages.append(Message("assistant", response))
    example.kto_label = kto_tag(row, spec.column("kto_tag"), where)
    return attach_media(example, row, spec, where)
