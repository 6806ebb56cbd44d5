"""The one probe set every rendering of a template is checked on: the training renderer, the Jinja
chat_template written on export (export/chat_template.py checks it before saving), the Ollama
template of the Modelfile, and the tests (tests/template_probes.py). English and Chinese, with and
without a system prompt, single and multi-turn, whitespace around messages, thinking, tools."""

from __future__ import annotations

import json

from tuneforge.data.example import Example, Message

SYSTEM = "You are a helpful assistant. 请用简体中文回答。"


def chat(*texts: str, system: str | None = None) -> Example:
    roles = ("user", "assistant")
    return Example(messages=[Message(roles[i % 2], t) for i, t in enumerate(texts)], system=system)


CHAT_PROBES = {
    "single": chat("Hi there", "Hello! How can I help?"),
    "single-system": chat("你好，请介绍一下你自己。", "我是一个乐于助人的助手。", system=SYSTEM),
    "multi": chat("你好", "你好！有什么可以帮你？", "What is 2+2?", "2+2 = 4.\n就是四。"),
    "multi-system": chat("把这句话翻译成英文：今天天气很好。", "The weather is nice today.",
                         "Now in French, please.", "Il fait beau aujourd'hui.", system=SYSTEM),
    # Leading/trailing whitespace in messages: templates that trim must trim exactly the same way.
    "whitespace": chat("  第一行\n第二行 \n", "\n 回答：好的。  ", "再来一次", " OK "),
}

THINKING_PROBES = {
    # Reasoning of earlier turns is dropped by Qwen3; only answers after the last user query keep it.
    "thoughts": chat("1+1等于几？", "<think>\n加法\n</think>\n\n2", "再乘以3呢？",
                     "<think>\n2*3=6\n</think>\n\n6", system=SYSTEM),
}

TOOLS = json.dumps([
    {"name": "get_weather", "description": "查询城市的天气",
     "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "城市名"}},
                    "required": ["city"]}},
    {"name": "add", "description": "Add two numbers",
     "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}},
], ensure_ascii=False)
ONE_CALL = json.dumps({"name": "get_weather", "arguments": {"city": "北京"}}, ensure_ascii=False)
TWO_CALLS = json.dumps([{"name": "get_weather", "arguments": {"city": "北京"}},
                        {"name": "add", "arguments": {"a": 3, "b": 4}}], ensure_ascii=False)


def tool_chat(call: str, system: str | None = None) -> Example:
    return Example(messages=[
        Message("user", "北京今天天气怎么样？再算一下 3+4。"),
        Message("function", call),
        Message("observation", '{"city": "北京", "temperature": 25, "condition": "晴"}'),
        Message("assistant", "北京今天晴，气温25度。"),
    ], system=system, tools=TOOLS)


TOOL_PROBES = {"one-call": tool_chat(ONE_CALL), "one-call-system": tool_chat(ONE_CALL, SYSTEM),
               "two-calls": tool_chat(TWO_CALLS), "two-calls-system": tool_chat(TWO_CALLS, SYSTEM)}

PROBES: dict[str, Example] = {**CHAT_PROBES, **THINKING_PROBES, **TOOL_PROBES}


def prompts_of(example: Example) -> list[Example]:
    """The generation prompts inside a conversation: everything before each assistant turn."""
    return [Example(messages=example.messages[:n], system=example.system, tools=example.tools)
            for n in range(1, len(example.messages), 2)]
