"""ShareGPT / OpenAI-messages records -> Example, with LLaMA-Factory's position rules:
human/observation turns at odd positions, gpt/function_call turns at even positions."""

from __future__ import annotations

from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.data.example import Example, Message
from tuneforge.data.formats.common import check_pair, kto_tag, text_field, tools_field
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
        if not isinstance(role, str):
            raise DataError(f"message {index} '{role_tag}' must be a string, got {type(role).__name__}",
                            source=where, key=col)
        if text is None:
            raise DataError(f"message {index} ('{role}') has a null or missing '{content_tag}'", source=where, key=col)
        if not isinstance(text, str):
            raise DataError(f"message {index} '{content_tag}' must be a string, got {type(text).__name__}",
                            source=where, key=col)
        return role, text

    first = 0  # messages are numbered as they appear in the record, system prompt included
    if isinstance(turns[0], dict) and turns[0].get(role_tag) == system_tag and system_tag:
        system = content(turns[0], 0)[1]
        first = 1
    if stage == "pt":
        texts = [content(t, i)[1] for i, t in enumerate(turns) if i >= first]
        return Example(text="\n".join(texts), source=where)

    messages = []
    asks = [k for k, v in roles.items() if v in ("user", "observation")]
    answers = [k for k, v in roles.items() if v in ("assistant", "function")]
    for index in range(first, len(turns)):
        role, text = content(turns[index], index)
        if role == system_tag and system_tag:
            raise DataError(f"message {index} is a '{role}' message; only the first message may be the system "
                            "prompt", source=where, key=col)
        if role not in roles:
            raise DataError(f"message {index} has unknown role '{role}' (expected one of "
                            f"{', '.join(map(repr, roles))} as set by 'tags')", source=where, key=col)
        ours = roles[role]
        position = index - first  # 0, 2, 4...: user side; 1, 3, 5...: assistant side
        expected = asks if position % 2 == 0 else answers
        if role not in expected:
            raise DataError(f"message {index} is '{role}' where a {' or '.join(map(repr, expected))} turn must come "
                            f"(turns out of order: {'/'.join(asks[:1] + answers[:1])} alternate, "
                            f"starting with {asks[0]!r})", source=where, key=col)
        if ours in ("assistant", "function") and not text.strip():
            raise DataError(f"message {index} ('{role}') is an empty answer", source=where, key=col)
        messages.append(Message(ours, text))
    if not messages:
        raise DataError("has a system prompt but no conversation", source=where, key=col)
    tools = tools_field(row, spec.column("tools"), where)
    if spec.ranking:
        return _preference(row, spec, where, messages, system, tools, content, answers)
    if len(messages) % 2 != 0:
        raise DataError(f"the conversation ends with message {len(turns) - 1} ('{turns[-1].get(role_tag)}'); it "
                        f"must end with a {' or '.join(map(repr, answers))} turn to train on", source=where,
                        key=col)
    return Example(messages=messages, system=system or None, tools=tools, source=where,
                   kto_label=kto_tag(row, spec.column("kto_tag"), where))


def _preference(row: dict[str, Any], spec: DatasetSpec, where: str, messages: list[Message], system: str | None,
                tools: str | None, content: Any, answers: list[str]) -> Example:
    """A ShareGPT preference record: the conversation ends on a user turn; `chosen` and `rejected` are
    two candidate answer messages."""
    col = spec.column("messages")
    if len(messages) % 2 == 0:
        raise DataError(f"a preference conversation must end with a user turn (the answers are in "
                        f"'{spec.column('chosen') or 'chosen'}'/'{spec.column('rejected') or 'rejected'}'), but it "
                        "ends on the assistant", source=where, key=col)
    pair = []
    for key in ("chosen", "rejected"):
        name = spec.column(key) or key
        value = row.get(name)
        if value is None:
            raise DataError(f"'{name}' is missing or null (a preference record needs {spec.column('chosen') or 'chosen'}"
                            f" and {spec.column('rejected') or 'rejected'})", source=where, key=name)
        if isinstance(value, str):  # a bare answer string is accepted too
            value = {spec.tag("role_tag"): answers[0], spec.tag("content_tag"): value}
        role, text = content(value, name)
        if role not in answers:
            raise DataError(f"'{name}' must be a {' or '.join(map(repr, answers))} message, got '{role}'",
                            source=where, key=name)
        if not text.strip():
            raise DataError(f"'{name}' is an empty answer", source=where, key=name)
        pair.append(Message("function" if role == spec.tag("function_tag") else "assistant", text))
    check_pair(pair[0].content, pair[1].content, where, (spec.column("chosen") or "chosen",
                                                          spec.column("rejected") or "rejected"))
    return Example(messages=messages, system=system or None, tools=tools, chosen=pair[0], rejected=pair[1],
                   source=where)
