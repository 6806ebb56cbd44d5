"""ShareGPT / OpenAI-messages records -> Example, with LLaMA-Factory's position rules:
human/observation turns at odd positions, gpt/function_call turns at even positions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.data.example import Example, Message
from tuneforge.data.formats.common import attach_media, check_pair, kto_tag, text_field, tools_field
from tuneforge.data.registry import DatasetSpec


@dataclass(frozen=True)
class _Tags:
    """How one dataset spells its messages (its `tags`), and where errors point (record, messages column)."""

    where: str
    col: str
    role_tag: str
    content_tag: str
    system_tag: str
    function_tag: str
    roles: dict[str, str]  # the dataset's role name -> ours

    @classmethod
    def of(cls, spec: DatasetSpec, where: str) -> "_Tags":
        roles = {spec.tag("user_tag"): "user", spec.tag("assistant_tag"): "assistant",
                 spec.tag("observation_tag"): "observation", spec.tag("function_tag"): "function"}
        return cls(where, spec.column("messages"), spec.tag("role_tag"), spec.tag("content_tag"),
                   spec.tag("system_tag"), spec.tag("function_tag"), roles)

    @property
    def asks(self) -> list[str]:
        return [k for k, v in self.roles.items() if v in ("user", "observation")]

    @property
    def answers(self) -> list[str]:
        return [k for k, v in self.roles.items() if v in ("assistant", "function")]

    def is_system(self, role: Any) -> bool:
        return role == self.system_tag and bool(self.system_tag)

    def error(self, message: str) -> DataError:
        return DataError(message, source=self.where, key=self.col)

    def content(self, turn: Any, index: int | str) -> tuple[str, str]:
        """(role, text) of one message, both strings."""
        role_tag, content_tag = self.role_tag, self.content_tag
        if not isinstance(turn, dict):
            raise self.error(f"message {index} must be an object with '{role_tag}' and '{content_tag}'")
        role, text = turn.get(role_tag), turn.get(content_tag)
        if role is None:
            raise self.error(f"message {index} has no '{role_tag}'")
        if not isinstance(role, str):
            raise self.error(f"message {index} '{role_tag}' must be a string, got {type(role).__name__}")
        if text is None:
            raise self.error(f"message {index} ('{role}') has a null or missing '{content_tag}'")
        if not isinstance(text, str):
            raise self.error(f"message {index} '{content_tag}' must be a string, got {type(text).__name__}")
        return role, text


def convert(row: dict[str, Any], spec: DatasetSpec, stage: str, where: str) -> Example:
    turns = _message_list(row, spec.column("messages"), where)
    tags = _Tags.of(spec, where)
    system = text_field(row, spec.column("system"), where, required=False)
    first = 0  # messages are numbered as they appear in the record, system prompt included
    if isinstance(turns[0], dict) and tags.is_system(turns[0].get(tags.role_tag)):
        system = tags.content(turns[0], 0)[1]
        first = 1
    if stage == "pt":
        texts = [tags.content(t, i)[1] for i, t in enumerate(turns) if i >= first]
        return Example(text="\n".join(texts), source=where)

    messages = _conversation(turns, first, tags)
    tools = tools_field(row, spec.column("tools"), where)
    if spec.ranking:
        return attach_media(_preference(row, spec, where, messages, system, tools, tags), row, spec, where)
    if len(messages) % 2 != 0:
        raise tags.error(f"the conversation ends with message {len(turns) - 1} ('{turns[-1].get(tags.role_tag)}'); "
                         f"it must end with a {' or '.join(map(repr, tags.answers))} turn to train on")
    return attach_media(Example(messages=messages, system=system or None, tools=tools, source=where,
                                kto_label=kto_tag(row, spec.column("kto_tag"), where)), row, spec, where)


def _message_list(row: Any, col: str, where: str) -> list[Any]:
    """The record's non-empty list of messages (each still unchecked)."""
    if not isinstance(row, dict):
        raise DataError(f"expected an object, got {type(row).__name__}", source=where)
    if col not in row or row[col] is None:
        raise DataError(f"'{col}' is missing (sharegpt needs a list of messages)", source=where, key=col)
    turns = row[col]
    if not isinstance(turns, list) or not turns:
        raise DataError(f"'{col}' must be a non-empty list of messages", source=where, key=col)
    return turns


def _conversation(turns: list[Any], first: int, tags: _Tags) -> list[Message]:
    """turns[first:] as our messages: known roles, user side and assistant side alternating (LLaMA-Factory's
    position rule), no second system prompt, no empty answers."""
    asks, answers = tags.asks, tags.answers
    messages = []
    for index in range(first, len(turns)):
        role, text = tags.content(turns[index], index)
        if tags.is_system(role):
            raise tags.error(f"message {index} is a '{role}' message; only the first message may be the system "
                             "prompt")
        if role not in tags.roles:
            raise tags.error(f"message {index} has unknown role '{role}' (expected one of "
                             f"{', '.join(map(repr, tags.roles))} as set by 'tags')")
        ours = tags.roles[role]
        position = index - first  # 0, 2, 4...: user side; 1, 3, 5...: assistant side
        expected = asks if position % 2 == 0 else answers
        if role not in expected:
            raise tags.error(f"message {index} is '{role}' where a {' or '.join(map(repr, expected))} turn must "
                             f"come (turns out of order: {'/'.join(asks[:1] + answers[:1])} alternate, "
                             f"starting with {asks[0]!r})")
        if ours in ("assistant", "function") and not text.strip():
            raise tags.error(f"message {index} ('{role}') is an empty answer")
        messages.append(Message(ours, text))
    if not messages:
        raise tags.error("has a system prompt but no conversation")
    return messages


def _preference(row: dict[str, Any], spec: DatasetSpec, where: str, messages: list[Message], system: str | None,
                tools: str | None, tags: _Tags) -> Example:
    """A ShareGPT preference record: the conversation ends on a user turn; `chosen` and `rejected` are
    two candidate answer messages."""
    col, answers = tags.col, tags.answers
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
            value = {tags.role_tag: answers[0], tags.content_tag: value}
        role, text = tags.content(value, name)
        if role not in answers:
            raise DataError(f"'{name}' must be a {' or '.join(map(repr, answers))} message, got '{role}'",
                            source=where, key=name)
        if not text.strip():
            raise DataError(f"'{name}' is an empty answer", source=where, key=name)
        pair.append(Message("function" if role == tags.function_tag else "assistant", text))
    check_pair(pair[0].content, pair[1].content, where, (spec.column("chosen") or "chosen",
                                                          spec.column("rejected") or "rejected"))
    return Example(messages=messages, system=system or None, tools=tools, chosen=pair[0], rejected=pair[1],
                   source=where)
