"""`template: auto`: use the tokenizer's own chat_template (Jinja).

Trained spans are found by rendering growing prefixes of the conversation: the text added by
an assistant message after `add_generation_prompt=True` is that message's answer. This needs a
prefix-preserving template (most are; Qwen3's thinking template is not: use `template: qwen3`).
"""

from __future__ import annotations

from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.data.example import Example
from tuneforge.data.templates.base import Turn
from tuneforge.data.templates.tools import calls, openai_tools


def hf_messages(example: Example, system: str | None) -> list[dict[str, Any]]:
    """Our canonical messages -> the role/content dicts HF chat templates expect."""
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    for message in example.messages:
        if message.role == "function":
            parsed = calls(message.content) or [{"name": "tool", "arguments": message.content}]
            out.append({"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments", {})}}
                for c in parsed]})
        elif message.role == "observation":
            out.append({"role": "tool", "content": message.content})
        else:
            out.append({"role": message.role, "content": message.content})
    return out


class AutoTemplate:
    name = "auto"
    notes = "the tokenizer's own chat_template"
    default_system = ""

    def __init__(self, tokenizer: Any):
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("template 'auto' needs a tokenizer with a chat_template; this one has none, so "
                              "name a template (e.g. qwen, llama3, default)")
        self.tokenizer = tokenizer
        eos = tokenizer.eos_token
        self.stop_words = (eos,) if eos else ()

    def _render(self, messages: list[dict[str, Any]], tools: Any, generation: bool, thinking: bool | None) -> str:
        kwargs = {"enable_thinking": thinking} if thinking is not None else {}
        try:
            return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                      add_generation_prompt=generation, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Jinja raise_exception and friends
            raise ConfigError(f"the tokenizer's chat_template failed: {exc}") from None

    def render(self, example: Example, *, bos: str = "", eos: str = "", default_system: str | None = None,
               enable_thinking: bool | None = True, for_generation: bool = False) -> list[Turn]:
        system = example.system if example.system is not None else default_system
        messages = hf_messages(Example(messages=example.messages), None)
        if system:
            messages.insert(0, {"role": "system", "content": system})
        offset = 1 if system else 0
        tools = openai_tools(example.tools) if example.tools else None
        turns: list[Turn] = []
        done = ""  # text rendered so far
        for index in range(0, len(example.messages), 2):
            upto = offset + index + 1
            with_header = self._render(messages[:upto], tools, True, enable_thinking)
            if not with_header.startswith(done):
                raise ConfigError("the tokenizer's chat_template is not prefix-preserving (earlier turns render "
                                  "differently as the chat grows); name a built-in template instead of auto")
            prompt = with_header[len(done):]
            if index + 1 >= len(example.messages):
                if not for_generation:
                    raise ValueError("conversation ends without an answer")
                turns.append(Turn(prompt, ""))
                break
            full = self._render(messages[:upto + 1], tools, False, enable_thinking)
            if not full.startswith(with_header):
                raise ConfigError("the tokenizer's chat_template renders the answer differently from its "
                                  "generation prompt; name a built-in template instead of auto")
            reply = full[len(with_header):]
            answer, suffix = self._split_stop(reply)
            turns.append(Turn(prompt, answer, suffix))
            done = full
        return turns

    def _split_stop(self, reply: str) -> tuple[str, str]:
        """Train through the last stop token; what follows it (newlines) is formatting."""
        for stop in self.stop_words:
            cut = reply.rfind(stop)
            if cut >= 0:
                return reply[:cut + len(stop)], reply[cut + len(stop):]
        return reply, ""

    def render_text(self, example: Example, **kwargs: Any) -> str:
        return "".join(t.prompt + t.answer + t.suffix for t in self.render(example, **kwargs))

