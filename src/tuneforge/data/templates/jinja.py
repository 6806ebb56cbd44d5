"""A built-in template written as a Jinja chat template, so an exported model chats correctly in
plain transformers, vLLM, llama.cpp and other engines that read `chat_template`.

`to_jinja(bound)` writes a template whose `apply_chat_template(messages, tools=..., add_generation_prompt=...)`
renders exactly what `Template.render_text` renders: the same system handling (default system,
block/merge styles, always_system), trimming, multi-turn, tool definitions and tool calls (the
template's `ToolStyle`), observation (`tool` role) turns, generation prefixes and Qwen3's thinking
blocks. bos/eos strings and the configured default_system / enable_thinking are baked in as literals.
A template without a ToolStyle raises on tools instead of silently dropping them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tuneforge.data.templates import BoundTemplate
from tuneforge.data.templates.base import EMPTY_THOUGHT, Template

TOOLS_UNSUPPORTED = ("this chat template was written by tuneforge from its '{name}' template, which has no tool "
                     "format, and does not render tools or tool calls")


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


def _tools_system(p: JinjaParts) -> list[str]:
    """The tool definitions added to `system` (ToolStyle.system), before the system is trimmed."""
    style = p.t.tools
    if style is None:
        return [p.raise_unless("tools", p.unsupported)]
    wrapped = '(tool if tool.type is defined else {"type": "function", "function": tool}) | tojson'
    return [
        "{%- if tools -%}",
        "{%- set listing = namespace(text='') -%}",
        "{%- for tool in tools -%}",
        f"{{%- set listing.text = listing.text + ('' if loop.first else {literal(style.tool_sep)}) + ({wrapped}) -%}}",
        "{%- endfor -%}",
        f"{{%- set system = (system + {literal(style.between)} if system else '') + {literal(style.header)} "
        f"+ listing.text + {literal(style.footer)} -%}}",
        "{%- endif -%}",
    ]


def _header(p: JinjaParts, bound: BoundTemplate) -> list[str]:
    """The comment, `system` / `loop_messages` (the default system baked in), tools, Qwen3's last query."""
    t = p.t
    default_system = bound.default_system if bound.default_system is not None else t.default_system
    out = [
        f"{{#- Written by tuneforge from its built-in template '{t.name}'"
        + (f" ({t.notes})" if t.notes else "") + ".\n"
        "    It renders exactly what tuneforge renders for training and generation. -#}",
        "{%- if messages and messages[0]['role'] == 'system' -%}",
        "{%- set system = messages[0]['content'] or '' -%}",
        "{%- set loop_messages = messages[1:] -%}",
        "{%- else -%}",
        f"{{%- set system = {literal(default_system or '')} -%}}",
        "{%- set loop_messages = messages -%}",
        "{%- endif -%}",
        *_tools_system(p),
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
    # the first turn: prefix, then the system block or the system merged into the message
    lead = p.expr(t.prefix.replace("{content}", ""), "")
    system_expr = p.expr(t.system, "system")
    out.append("{%- if loop.first -%}")
    if _emit(lead):
        out.append(_emit(lead))
    if t.system_style == "block":
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


def _tool_calls(p: JinjaParts) -> list[str]:
    """An assistant message with tool_calls: the calls as ToolStyle.calls writes them, in the
    template's `function` format (the format of a 'function' turn in training data)."""
    style = p.t.tools
    if style is None:
        return [p.raise_unless("message.tool_calls is defined and message.tool_calls", p.unsupported)]
    arguments = "(call.arguments if call.arguments is string else call.arguments | tojson)"
    head, middle, tail = style.call_open + '{"name": "', '", "arguments": ', "}" + style.call_close
    one = f"{literal(head)} + call.name + {literal(middle)} + {arguments} + {literal(tail)}"
    return [
        "{%- if message.tool_calls is defined and message.tool_calls -%}",
        "{%- set calls = namespace(text='') -%}",
        "{%- for tool_call in message.tool_calls -%}",
        "{%- set call = tool_call.function if tool_call.function is defined else tool_call -%}",
        f"{{%- set calls.text = calls.text + ('' if loop.first else {literal(style.call_sep)}) + {one} -%}}",
        "{%- endfor -%}",
        "{%- if message.tool_calls | length > 1 -%}",
        f"{{%- set calls.text = {literal(style.list_open)} + calls.text + {literal(style.list_close)} -%}}",
        "{%- endif -%}",
        f"{{%- set content = calls.text{p.trim} -%}}",
        _emit(p.expr(p.t.function + p.t.suffix.replace("{content}", ""), "content")),
        "{%- else -%}",
    ]


def _assistant_turn(p: JinjaParts) -> list[str]:
    """An odd turn: the assistant's answer or tool calls (Qwen3's thought handled), then the suffix."""
    out = [p.raise_unless("message['role'] != 'assistant'", p.alternate), *_tool_calls(p)]
    if p.qwen3:
        out += QWEN3_THOUGHT
    out.append(_emit(p.expr(p.t.assistant + p.t.suffix.replace("{content}", ""), "content")))
    if p.t.tools is not None:
        out.append("{%- endif -%}")
    return out


def to_jinja(bound: BoundTemplate) -> str:
    """Write `bound` (a built-in Template joined to a tokenizer) as an equivalent Jinja chat template."""
    p = JinjaParts.of(bound)
    out = _header(p, bound)
    out += [
        "{%- for message in loop_messages -%}",
        f"{{%- set content = (message['content'] or ''){p.trim} -%}}",
        "{%- if loop.index0 % 2 == 0 -%}",
        *_user_turn(p),
        "{%- else -%}",
        *_assistant_turn(p),
        "{%- endif -%}",
        "{%- endfor -%}",
    ]
    return "\n".join(out) + "\n"
