"""How tool descriptions and tool calls are written into text, per template family.

Data stores tools as a JSON list of function schemas and a tool call as
`{"name": ..., "arguments": {...}}` (or a list of them); templates render them the way the
model family's own chat template does.
"""

from __future__ import annotations

import json
from typing import Any


def _dump(value: Any) -> str:
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


QWEN_TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
QWEN_TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>"
)


def qwen_tools_system(system: str, tools_json: str) -> str:
    listing = "".join("\n" + _dump(tool) for tool in openai_tools(tools_json))
    return (system + "\n\n" if system else "") + QWEN_TOOLS_HEADER + listing + QWEN_TOOLS_FOOTER


def qwen_function(text: str) -> str:
    parsed = calls(text)
    if parsed is None:
        return f"<tool_call>\n{text}\n</tool_call>"
    blocks = []
    for call in parsed:
        args = call.get("arguments", {})
        args_text = args if isinstance(args, str) else _dump(args)
        blocks.append(f'<tool_call>\n{{"name": "{call["name"]}", "arguments": {args_text}}}\n</tool_call>')
    return "\n".join(blocks)


def generic_tools_system(system: str, tools_json: str) -> str:
    listing = "\n".join(_dump(t) for t in openai_tools(tools_json))
    text = ("You can call these tools. To call one, answer only with a JSON object "
            '{"name": <tool name>, "arguments": <arguments object>}.\n' + listing)
    return (system + "\n\n" if system else "") + text
