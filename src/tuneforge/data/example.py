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
    chosen: Message | None = None  # preference pairs: the better and worse final answer
    rejected: Message | None = None
    kto_label: bool | None = None  # KTO: is the final answer desirable?
    source: str = ""  # "file record N", for messages about this example
    images: list[str] = field(default_factory=list)  # absolute paths, in the order of the <image> placeholders
    videos: list[str] = field(default_factory=list)  # absolute paths, in the order of the <video> placeholders

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Example:
        msgs = [Message(**m) for m in row.get("messages") or []]
        chosen, rejected = row.get("chosen"), row.get("rejected")
        return cls(messages=msgs, system=row.get("system"), tools=row.get("tools"), text=row.get("text"),
                   chosen=Message(**chosen) if chosen else None, rejected=Message(**rejected) if rejected else None,
                   kto_label=row.get("kto_label"), source=row.get("source", ""),
                   images=list(row.get("images") or []), videos=list(row.get("videos") or []))

    def with_answer(self, answer: Message) -> Example:
        """This conversation (ending on a user turn) completed with one answer."""
        return Example(messages=[*self.messages, answer], system=self.system, tools=self.tools, source=self.source,
                       images=self.images, videos=self.videos)
