"""Conversations both template tests (data/test_templates.py) and export tests render."""

from __future__ import annotations

from tuneforge.data.example import Example, Message

SYSTEM = "You are a helpful assistant. 请用简体中文回答。"


def chat(*texts: str, system: str | None = None) -> Example:
    roles = ("user", "assistant")
    return Example(messages=[Message(roles[i % 2], t) for i, t in enumerate(texts)], system=system)


PROBES = {
    "single": chat("Hi there", "Hello! How can I help?"),
    "single-system": chat("你好，请介绍一下你自己。", "我是一个乐于助人的助手。", system=SYSTEM),
    "multi": chat("你好", "你好！有什么可以帮你？", "What is 2+2?", "2+2 = 4.\n就是四。"),
    "multi-system": chat("把这句话翻译成英文：今天天气很好。", "The weather is nice today.",
                         "Now in French, please.", "Il fait beau aujourd'hui.", system=SYSTEM),
    # Leading/trailing whitespace in messages: templates that trim must trim exactly the same way.
    "whitespace": chat("  第一行\n第二行 \n", "\n 回答：好的。  ", "再来一次", " OK "),
}
