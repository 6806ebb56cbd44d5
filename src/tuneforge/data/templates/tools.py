"""How tool descriptions and tool calls are written into text, per template family.

Data stores tools as a JSON list of function schemas and a tool call as
`{"name": ..., "arguments": {...}}` (or a list of them). A template names a `ToolStyle`: plain
text pieces that every rendering (training, the Jinja chat_template, the Ollama template) puts
together the same way, so the three cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


def dump(value: Any) -> str:
    # transformers' `tojson` filter: json.dumps with ensure_ascii=False and default separators
    return json.dumps(value, ensure_ascii=False)


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def openai_tools(tools_json: str) -> list[dict[str, Any]]:
    """Plain function schemas -> [{"type": "function", "function": {...}}] (what HF templates take)."""
    tools = _load(tools_json) or []
    if isinstance(tools, dict):
        tools = [tools]
    return [t if isinstance(t, dict) and "type" in t else {"type": "function", "function": t} for t in tools]


def calls(text: str) -> list[dict[str, Any]] | None:
    value = _load(text)
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list) and all(isinstance(c, dict) and "name" in c for c in value):
        return value
    return None


@dataclass(frozen=True)
class ToolStyle:
    """Tools in the system text: `system + between` (when there is a system) + `header` + the tools
    as JSON (openai-wrapped), joined by `tool_sep` + `footer`. A call: `call_open` + '{"name":
    "<name>", "arguments": <arguments JSON>}' + `call_close`; several calls joined by `call_sep`,
    wrapped in `list_open`/`list_close` (a JSON list when those are brackets)."""

    name: str
    header: str
    footer: str = ""
    between: str = "\n\n"
    tool_sep: str = "\n"
    call_open: str = ""
    call_close: str = ""
    call_sep: str = "\n"
    list_open: str = ""
    list_close: str = ""

    def system(self, system: str, tools_json: str) -> str:
        listing = self.tool_sep.join(dump(tool) for tool in openai_tools(tools_json))
        return (system + self.between if system else "") + self.header + listing + self.footer

    def call(self, name: str, arguments: Any) -> str:
        args = arguments if isinstance(arguments, str) else dump(arguments)
        return f'{self.call_open}{{"name": "{name}", "arguments": {args}}}{self.call_close}'

    def calls(self, text: str) -> str:
        """An assistant's tool call(s) as the model writes them; text that is not a call is kept as it is."""
        parsed = calls(text)
        if parsed is None:
            return f"{self.call_open}{text}{self.call_close}"
        body = self.call_sep.join(self.call(c["name"], c.get("arguments", {})) for c in parsed)
        return f"{self.list_open}{body}{self.list_close}" if len(parsed) > 1 else body


QWEN_TOOLS = ToolStyle(
    name="qwen",
    header=("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"),
    footer=("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
            "<args-json-object>}\n</tool_call>"),
    call_open="<tool_call>\n", call_close="\n</tool_call>",
)
# Templates whose family has no tool format of its own: a JSON call (a JSON list for several),
# which serve/protocol.parse_tool_calls reads back.
GENERIC_TOOLS = ToolStyle(
    name="json",
    header=("You can call these tools. To call one, answer only with a JSON object "
            '{"name": <tool name>, "arguments": <arguments object>}.\n'),
    call_sep=", ", list_open="[", list_close="]",
)
