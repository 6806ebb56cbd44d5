"""ShareGPT / OpenAI-messages records -> Example, with LLaMA-Factory's position rules:
human/observation turns at odd positions, gpt/function_call turns at even positions."""

from __future__ import annotations

from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.data.example import Example, Message
from tuneforge.data.formats.common import text_field, tools_field
from tuneforge.data.registry import DatasetSpec


def convert(row: dict[str, Any], spec: DatasetSpec, stage: str, where: str) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"expected an object, got {type(row).__name__}", source=where)
    col = spec.column("messages")
    if col not in row or row[col] is None:
        raise DataError(f"'{col}' is missing (sharegpt needs a list of messages)", source=where, key=col)
    turns = row[col]
    if not isinstance(turns, list) or not turns:
        raise DataError(f"'{col}' must be a non-empty list of messages", source=where, key=col)
    role_tag, content_tag = spec.tag("role_tag"), spec.tag("content_tag")
    roles = {spec.tag("user_tag"): "user", spec.tag("assistant_tag"): "assistant",
             spec.tag("observation_tag"): "observation", spec.tag("function_tag"): "function"}
    system_tag = spec.tag("system_tag")
    system = text_field(row, spec.column("system"), where, required=False)

    def content(turn: Any, index: int) -> tuple[str, str]:
        if not isinstance(turn, dict):
            raise DataError(f"message {index} must be an object with '{role_tag}' and '{content_tag}'",
                            source=where, key=col)
        role, text = turn.get(role_tag), turn.get(content_tag)
        if role is None:
            raise DataError(f"message {index} has no '{role_tag}'", source=where, key=col)
        if text is None:
            raise DataError(f"message {index} ('{role}') has a null or missing '{content_tag}'", source=where, key=col)
        if not isinstance(text, str):
            raise DataError(f"message {index} '{content_tag}' must be a string, got {type(text).__name__}",
                            source=where, key=col)
        return role, text

    if isinstance(turns[0], dict) and turns[0].get(role_tag) == system_tag and system_tag:
        system = content(turns[0], 0)[1]
        turns = turns[1:]
    if stage == "pt":
        texts = [content(t, i)[1] for i, t in enumerate(turns)]
        return Example(text="\n".join(texts), source=where)

    messages = []
    for index, turn in enumerate(turns):
        role, text = content(turn, index)
        if role not in roles:
            raise DataError(f"message {index} has unknown role '{role}' (expected one of "
                            f"{', '.join(map(repr, roles))} as set by 'tags')", source=where, key=col)
        ours = roles[role]
        expected = ("user", "observation") if index % 2 == 0 else ("assistant", "function")
        if ours not in expected:
            names = [k for k, v in roles.items() if v in expected]
            raise DataError(f"message {index} is '{role}' but position {index + 1} must be "
                            f"{' or '.join(map(repr, names))} (turns out of order)", source=where, key=col)
        if ours in ("assistant", "function") and not text.strip():
            raise DataError(f"message {index} ('{role}') is an empty answer", source=where, key=col)
        messages.append(Message(ours, text))
    if len(messages) % 2 != 0:
        raise DataError("the conversation must end with an assistant (or function_call) turn", source=where,
                        key=col)
    return Example(messages=messages, system=system or None, tools=tools_field(row, spec.column("tools"), where),
                   source=where)
