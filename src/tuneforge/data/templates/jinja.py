"""Our built-in templates written as Jinja chat templates, so an exported model chats correctly in
plain transformers, vLLM and other engines that read `chat_template` from the tokenizer.

`to_jinja(bound)` writes a template whose `apply_chat_template(messages, add_generation_prompt=...)`
renders exactly what `Template.render_text` renders: the same system handling (default system,
block/lead/merge styles, always_system), trimming, multi-turn, observation (`tool` role) turns,
generation prefixes and Qwen3's thinking blocks. bos/eos strings and the configured
default_system / enable_thinking are baked in as literals.

Not rendered: tool definitions (`tools=`) and assistant `tool_calls`; tuneforge writes those
with Python code per family. A request that carries them raises an error instead of silently
dropping them.

`choose_chat_template(bound)` decides what the export ships: the tokenizer's own chat_template
when it renders exactly like our template (it usually also renders tools), ours otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tuneforge.data.example import Example, Message
from tuneforge.data.templates import BoundTemplate
from tuneforge.data.templates.auto import hf_messages
from tuneforge.data.templates.base import EMPTY_THOUGHT, Template

TOOLS_UNSUPPORTED = ("this chat template was written by tuneforge from its '{name}' template and does not render "
                     "tools or tool calls")


def literal(text: str) -> str:
    """A Jinja string literal (Jinja decodes Python/JSON-style escapes; non-ASCII stays as it is)."""
    return json.dumps(text, ensure_ascii=False)


def _expr(fmt: str, var: str, bos: str, eos: str) -> str:
    """`Template._fill(fmt, <var>, bos, eos)` as a Jinja expression."""
    filled = fmt.replace("{bos}", bos).replace("{eos}", eos)
    pieces = filled.split("{content}")
    parts = [literal(pieces[0])] if pieces[0] else []
    for piece in pieces[1:]:
        parts.append(var)
        if piece:
            parts.append(literal(piece))
    return " + ".join(parts) or '""'


def _emit(expr: str) -> str:
    return "" if expr == '""' else f"{{{{- {expr} -}}}}"


def _jinja_bool(value: bool | None) -> str:
    return "none" if value is None else ("true" if value else "false")


@dataclass(frozen=True)
class JinjaParts:
    """What every piece of the written template needs: the template, bos/eos as literals, whether
    messages are trimmed, and the two error messages it raises."""

    t: Template
    bos: str
    eos: str
    trim: str  # " | trim" or ""
    unsupported: str  # Jinja literal: tools are not rendered
    alternate: str  # Jinja literal: roles must alternate

    @classmethod
    def of(cls, bound: BoundTemplate) -> JinjaParts:
        t = bound.template
        if not isinstance(t, Template):
            raise TypeError("to_jinja needs a built-in template; 'auto' is the tokenizer's own already")
        alternate = (f"template '{t.name}': messages must be user and assistant turns in turn "
                     "(after one optional system message)")
        return cls(t, bound.bos, bound.eos, " | trim" if t.strip else "",
                   literal(TOOLS_UNSUPPORTED.format(name=t.name)), literal(alternate))

    @property
    def qwen3(self) -> bool:
        return self.t.thinking == "qwen3"

    def expr(self, fmt: str, var: str) -> str:
        return _expr(fmt, var, self.bos, self.eos)

    def raise_unless(self, condition: str, message: str) -> str:
        return "{%- if " + condition + " -%}{{- raise_exception(" + message + ") -}}{%- endif -%}"


def _header(p: JinjaParts, bound: BoundTemplate) -> list[str]:
    """The comment, the refusal of tools, and `system` / `loop_messages` (the default system baked in)."""
    t = p.t
    default_system = bound.default_system if bound.default_system is not None else t.default_system
    out = [
        f"{{#- Written by tuneforge from its built-in template '{t.name}'"
        + (f" ({t.notes})" if t.notes else "") + ".\n"
        "    It renders exactly what tuneforge renders for training and generation. Tool definitions and\n"
        "    tool calls are not rendered (tuneforge formats them in Python); requests with them raise. -#}",
        p.raise_unless("tools", p.unsupported),
        "{%- if messages and messages[0]['role'] == 'system' -%}",
        "{%- set system = messages[0]['content'] or '' -%}",
        "{%- set loop_messages = messages[1:] -%}",
        "{%- else -%}",
        f"{{%- set system = {literal(default_system or '')} -%}}",
        "{%- set loop_messages = messages -%}",
        "{%- endif -%}",
    ]
    if p.trim:
        out.append("{%- set system = system | trim -%}")
    if p.qwen3:
        out += [
            f"{{%- set thinking = enable_thinking if enable_thinking is defined else {_jinja_bool(bound.enable_thinking)} -%}}",
            "{%- set ns = namespace(last_query=-1) -%}",
            "{%- for message in loop_messages -%}",
            "{%- if message['role'] == 'user' -%}{%- set ns.last_query = loop.index0 -%}{%- endif -%}",
            "{%- endfor -%}",
        ]
    return out


def _user_turn(p: JinjaParts) -> list[str]:
    """An even turn (user or tool): the first one opens with the prefix and the system; a last one
    adds the generation prompt."""
    t = p.t
    out = [p.raise_unless("message['role'] not in ['user', 'tool']", p.alternate)]
    # the first turn: prefix, then the system block (block/lead) or the system merged into the message
    lead = p.expr(t.prefix.replace("{content}", ""), "")
    system_expr = p.expr(t.system, "system")
    out.append("{%- if loop.first -%}")
    if _emit(lead):
        out.append(_emit(lead))
    if t.system_style in ("block", "lead"):
        always = " or true" if t.always_system else ""
        out.append(f"{{%- if system{always} -%}}{_emit(system_expr)}{{%- endif -%}}")
    else:  # merge
        out.append(f"{{%- if system -%}}{{%- set content = {system_expr} + content -%}}{{%- endif -%}}")
    out.append("{%- endif -%}")
    user_expr = p.expr(t.user, "content")
    if t.observation is not None:
        out.append(f"{{%- if message['role'] == 'tool' -%}}{_emit(p.expr(t.observation, 'content'))}"
                   f"{{%- else -%}}{_emit(user_expr)}{{%- endif -%}}")
    else:
        out.append(_emit(user_expr))
    # A conversation that ends with a user turn renders the assistant header (our user formats end
    # with it); add_generation_prompt adds only what the template puts after the header.
    if t.generation_prefix or p.qwen3:
        out.append("{%- if loop.last and add_generation_prompt -%}")
        if t.generation_prefix:
            out.append(_emit(literal(t.generation_prefix)))
        if p.qwen3:
            out.append(f"{{%- if thinking == false -%}}{_emit(literal(EMPTY_THOUGHT))}{{%- endif -%}}")
        out.append("{%- endif -%}")
    return out


# Qwen3: reasoning is shown only after the last user query; the final answer always carries a
# (possibly empty) <think> block, which enable_thinking=false puts in the prompt.
QWEN3_THOUGHT = [
    "{%- set lead_text = content.lstrip() -%}",
    "{%- if lead_text.startswith('<think>') and '</think>' in lead_text -%}",
    "{%- set parts = lead_text[7:].split('</think>', 1) -%}",
    "{%- set has_thought = true -%}",
    "{%- set thought = parts[0].strip('\\n') -%}",
    "{%- set rest = parts[1].lstrip() -%}",
    "{%- else -%}",
    "{%- set has_thought = false -%}",
    "{%- set thought = '' -%}",
    "{%- set rest = content -%}",
    "{%- endif -%}",
    "{%- if loop.index0 > ns.last_query and (loop.last or thought) -%}",
    "{%- if not has_thought and thinking == false -%}",
    _emit(literal(EMPTY_THOUGHT)),
    "{%- set content = rest -%}",
    "{%- else -%}",
    "{%- set content = '<think>\\n' + thought + '\\n</think>\\n\\n' + rest.lstrip('\\n') -%}",
    "{%- endif -%}",
    "{%- else -%}",
    "{%- set content = rest -%}",
    "{%- endif -%}",
]


def _assistant_turn(p: JinjaParts) -> list[str]:
    """An odd turn: the assistant's answer (Qwen3's thought handled), then the template's suffix."""
    out = [p.raise_unless("message['role'] != 'assistant'", p.alternate)]
    if p.qwen3:
        out += QWEN3_THOUGHT
    out.append(_emit(p.expr(p.t.assistant + p.t.suffix.replace("{content}", ""), "content")))
    return out


def to_jinja(bound: BoundTemplate) -> str:
    """Write `bound` (a built-in Template joined to a tokenizer) as an equivalent Jinja chat template."""
    p = JinjaParts.of(bound)
    out = _header(p, bound)
    out += [
        "{%- for message in loop_messages -%}",
        p.raise_unless("message.tool_calls is defined and message.tool_calls", p.unsupported),
        f"{{%- set content = (message['content'] or ''){p.trim} -%}}",
        "{%- if loop.index0 % 2 == 0 -%}",
        *_user_turn(p),
        "{%- else -%}",
        *_assistant_turn(p),
        "{%- endif -%}",
        "{%- endfor -%}",
    ]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- keep or replace

_SYSTEM = "You are a helpful assistant. 请用简体中文回答。"
PROBES = [
    Example(messages=[Message("user", "Hi there"), Message("assistant", "Hello! How can I help?")]),
    Example(messages=[Message("user", "你好"), Message("assistant", "你好！")], system=_SYSTEM),
    Example(messages=[Message("user", "你好"), Message("assistant", "你好！有什么可以帮你？"),
                      Message("user", "What is 2+2?"), Message("assistant", "2+2 = 4.\n就是四。")]),
    Example(messages=[Message("user", "  第一行\n第二行 \n"), Message("assistant", "\n 回答：好的。  "),
                      Message("user", "再来一次"), Message("assistant", " OK ")], system=_SYSTEM),
]


def _renders_like(bound: BoundTemplate, chat_template: str) -> bool:
    """Does `chat_template`, called as a plain user would (no extra kwargs), render every probe and
    generation prompt exactly as `bound` does?"""
    tok = bound.tokenizer
    for probe in PROBES:
        prompts = [Example(messages=probe.messages[:n], system=probe.system)
                   for n in range(1, len(probe.messages) + 1, 2)]
        cases = [(probe, False)] + [(p, True) for p in prompts]
        for example, generation in cases:
            try:
                theirs = tok.apply_chat_template(hf_messages(example, example.system), chat_template=chat_template,
                                                 tokenize=False, add_generation_prompt=generation)
            except Exception:  # noqa: BLE001 - a template that cannot render a plain chat is no match
                return False
            if theirs != bound.render_text(example, for_generation=generation):
                return False
    return True


def choose_chat_template(bound: BoundTemplate) -> tuple[str | None, str]:
    """(chat_template to save, one line saying which). `auto` keeps the tokenizer's own; a built-in
    template keeps the tokenizer's own only when it renders identically (it also knows tools),
    else our Jinja is written."""
    own = getattr(bound.tokenizer, "chat_template", None)
    if bound.name == "auto":
        return own, "the tokenizer's own chat_template (template: auto)"
    if isinstance(own, str) and own and _renders_like(bound, own):
        return own, f"the tokenizer's own chat_template (it renders exactly as template '{bound.name}')"
    ours = to_jinja(bound)
    if not _renders_like(bound, ours):  # a bug in to_jinja, not a user error
        raise RuntimeError(f"the Jinja written for template '{bound.name}' renders differently from it")
    reason = "the tokenizer has none" if not own else "the tokenizer's own renders differently"
    return ours, f"a chat_template written from template '{bound.name}' ({reason}; tools are not rendered)"


def stop_settings(bound: BoundTemplate) -> dict[str, Any]:
    """What the exported tokenizer and generation_config need so plain `generate` stops where
    tuneforge does: every stop token id (the template's stop words, then the tokenizer's eos), and
    the template's first stop word as the tokenizer's eos_token (as LLaMA-Factory does), so engines
    that only read the tokenizer's eos stop too."""
    stops = bound.stop_strings()
    return {"eos_token_ids": bound.stop_token_ids(), "eos_token": stops[0] if stops else bound.eos}
