"""The canonical example every format produces and every template consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant", "function", "observation", "system"]
# user: a human turn; assistant: a model answer; function: a tool call the model makes;
# observation: a tool result fed back; system: only inside `messages` for templates that allow it.
TRAINED_ROLES = ("assistant", "function")


@dataclass
class Message:
    role: Role
    content: str


@dataclass
class Example:
    messages: list[Message] = field(default_factory=list)
    system: str | None = None
    tools: str | None = None
    text: str | None = None  # pre-training documents
    source: str = ""  # "file record N", for messages about this example

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Example:
        msgs = [Message(**m) for m in row.get("messages") or []]
        return cls(messages=msgs, system=row.get("system"), tools=row.get("tools"),
                   text=row.get("text"), source=row.get("source", ""))
