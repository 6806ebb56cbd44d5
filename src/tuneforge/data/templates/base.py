"""A chat template turns an Example into text turns and says which part of each turn trains.

Rendering yields `Turn(prompt, answer, suffix)` strings: `prompt` (system, user message and the
assistant header) never trains unless train_on_prompt; `answer` is the model's reply and always
ends with the template's stop token, so a fine-tuned model learns to stop; `suffix` is
formatting after the stop token (e.g. chatml's newline), rendered but not trained.
Tokenization happens later, on the whole text at once, so ids equal `apply_chat_template`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from tuneforge.data.example import Example, Message
from tuneforge.data.templates.tools import ToolStyle
from tuneforge.data.templates.vision import VisionStyle

EMPTY_THOUGHT = "<think>\n\n</think>\n\n"
THINK_RE = re.compile(r"^\s*<think>(.*?)</think>\s*", re.DOTALL)


@dataclass
class Turn:
    prompt: str
    answer: str
    suffix: str = ""


@dataclass(frozen=True)
class Template:
    """Format strings use {content}; {bos}/{eos} are the tokenizer's special tokens.

    system_style: "block" renders `system` right after `prefix`, before the first turn (chatml,
    deepseek, alpaca); "merge" prepends `system` (formatted) to the first user message, as
    llama2/gemma/mistral do.
    """

    name: str
    user: str
    assistant: str
    stop_words: tuple[str, ...]
    prefix: str = ""
    system: str = "{content}"
    system_style: Literal["block", "merge"] = "block"
    suffix: str = ""
    observation: str | None = None
    function: str = "{content}"
    default_system: str = ""
    always_system: bool = False
    strip: bool = False
    # Text the generation prompt adds after the assistant header (e.g. R1's "<think>\n").
    generation_prefix: str = ""
    # "qwen3": answers after the last user query carry a <think> block, earlier ones do not.
    thinking: str = ""
    # How tool definitions and tool calls are written (None: tools are not rendered, calls kept as written).
    tools: ToolStyle | None = None
    # Vision-language templates: how an <image> placeholder is written (None: a text-only template).
    vision: VisionStyle | None = None
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())

    # ---------------------------------------------------------------- rendering
    def _fill(self, fmt: str, content: str, bos: str, eos: str) -> str:
        return fmt.replace("{bos}", bos).replace("{eos}", eos).replace("{content}", content)

    def system_text(self, example: Example, default_system: str | None) -> str:
        system = example.system
        if system is None:
            system = default_system if default_system is not None else self.default_system
        system = system or ""
        if example.tools and self.tools is not None:
            system = self.tools.system(system, example.tools)
        return system

    def render(self, example: Example, *, bos: str = "", eos: str = "", default_system: str | None = None,
               enable_thinking: bool | None = True, for_generation: bool = False) -> list[Turn]:
        """Render the conversation as turns. With for_generation, the last message must be a user
        (or observation) message and the last turn's answer is empty."""
        messages = list(example.messages)
        if self.vision is not None:
            messages = [Message(m.role, self.vision.fill(m.content)) for m in messages]
        strip = (lambda s: s.strip()) if self.strip else (lambda s: s)
        system = strip(self.system_text(example, default_system))
        lead = self._fill(self.prefix, "", bos, eos)
        if system or self.always_system:
            if self.system_style == "block":
                lead += self._fill(self.system, system, bos, eos)
        answers = self._answers(messages, enable_thinking)
        turns: list[Turn] = []
        answer_iter = iter(answers)
        for index in range(0, len(messages), 2):
            query = messages[index]
            content = strip(query.content)
            if index == 0 and system and self.system_style == "merge":
                content = self._fill(self.system, system, bos, eos) + content
            fmt = self.user
            if query.role == "observation" and self.observation is not None:
                fmt = self.observation
            prompt = self._fill(fmt, content, bos, eos)
            if index == 0:
                prompt = lead + prompt
            if index + 1 >= len(messages):
                if not for_generation:
                    raise ValueError("conversation ends without an answer")
                prompt += self.generation_prefix
                if self.thinking == "qwen3" and enable_thinking is False:
                    prompt += EMPTY_THOUGHT
                turns.append(Turn(prompt, ""))
                break
            reply = messages[index + 1]
            prompt_extra, text = next(answer_iter)
            prompt += prompt_extra
            if reply.role == "function" and self.tools is not None:
                text = self.tools.calls(text)
            answer_fmt = self.function if reply.role == "function" else self.assistant
            turns.append(Turn(prompt, self._fill(answer_fmt, strip(text), bos, eos),
                              self._fill(self.suffix, "", bos, eos)))
        return turns

    def _answers(self, messages: list[Message], enable_thinking: bool | None) -> list[tuple[str, str]]:
        """(text added to the prompt, answer text) for each assistant/function message."""
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        last_query = users[-1] if users else -1
        out = []
        for i, message in enumerate(messages):
            if message.role not in ("assistant", "function"):
                continue
            if self.thinking != "qwen3" or message.role != "assistant":
                out.append(("", message.content))
                continue
            # Qwen3's own template: reasoning is shown only after the last user query, and the
            # final answer always carries a (possibly empty) <think> block.
            thought, rest = split_thought(message.content)
            if i > last_query and (i == len(messages) - 1 or thought):
                if thought is None and enable_thinking is False:
                    out.append((EMPTY_THOUGHT, rest))  # fast-thinking: empty CoT is prompt, not trained
                else:
                    out.append(("", f"<think>\n{thought or ''}\n</think>\n\n{rest.lstrip(chr(10))}"))
            else:
                out.append(("", rest))
        return out

    def render_text(self, example: Example, **kwargs) -> str:
        return "".join(t.prompt + t.answer + t.suffix for t in self.render(example, **kwargs))


def split_thought(text: str) -> tuple[str | None, str]:
    """'<think>x</think>\n\ny' -> ('x', 'y'); text without a think block -> (None, text)."""
    match = THINK_RE.match(text)
    if not match:
        return None, text
    return match.group(1).strip("\n"), text[match.end():]
