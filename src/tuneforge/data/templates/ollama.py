"""A built-in template written as an Ollama TEMPLATE (Go text/template over Ollama's chat request).

Ollama renders `.Messages` (Role, Content, Thinking, ToolCalls), `.Tools`, `.Think`/`.IsThinkSet`;
it adds nothing itself, so the template writes every turn and, after a last user or tool message,
the assistant header. What it renders equals `Template.render_text` for the same chat, with these
differences, all Ollama's (no string functions in its templates, Go's JSON):
- messages are not trimmed (Ollama passes them as sent);
- tool definitions and tool-call arguments are printed by Ollama as compact JSON (Go's encoding/json);
- a Qwen3 thought arrives in `.Thinking` (Ollama splits <think> off answers itself);
- a bos token the tokenizer adds by itself (`add_bos`) is left out at the start, or it would be doubled.
"""

from __future__ import annotations

import json

from tuneforge.data.templates import BoundTemplate
from tuneforge.data.templates.base import EMPTY_THOUGHT, Template


def go_string(text: str) -> str:
    """A Go string literal (Go accepts JSON's escapes and raw UTF-8)."""
    return json.dumps(text, ensure_ascii=False)


def text(piece: str) -> str:
    """Literal template text; written as a Go string action when it would read as an action."""
    if "{{" in piece or "}}" in piece:
        return "{{ " + go_string(piece) + " }}"
    return piece


class GoParts:
    """One template's pieces as Go template text: bos/eos filled in, {content} given as an action."""

    def __init__(self, bound: BoundTemplate, add_bos: bool):
        t = bound.template
        if not isinstance(t, Template):
            raise TypeError("an Ollama template is written from a built-in template, not 'auto'")
        self.t, self.bos, self.eos, self.add_bos = t, bound.bos, bound.eos, add_bos
        self.default_system = bound.default_system if bound.default_system is not None else t.default_system
        self.thinking = bound.enable_thinking is not False

    def fill(self, fmt: str, content: str = "", *, first: bool = False) -> str:
        """`Template._fill` with `content` a Go action; a leading bos dropped when the tokenizer adds one."""
        if first and self.add_bos and fmt.startswith("{bos}"):
            fmt = fmt[len("{bos}"):]
        fmt = fmt.replace("{bos}", self.bos).replace("{eos}", self.eos)
        return content.join(text(p) for p in fmt.split("{content}"))


def _system(g: GoParts) -> str:
    """$sys: the first system message or the default system, with the tool definitions added."""
    out = ("{{ $sys := " + go_string(g.default_system or "") + " }}{{ $msgs := .Messages }}"
           '{{ if and .Messages (eq (index .Messages 0).Role "system") }}'
           "{{ $sys = (index .Messages 0).Content }}{{ $msgs = slice .Messages 1 }}{{ end }}")
    style = g.t.tools
    if style is not None:
        out += ('{{ if .Tools }}{{ $list := "" }}{{ range $j, $tool := .Tools }}'
                "{{ if $j }}{{ $list = print $list " + go_string(style.tool_sep) + " }}{{ end }}"
                '{{ $list = printf "%s%s" $list $tool }}{{ end }}'
                "{{ if $sys }}{{ $sys = print $sys " + go_string(style.between) + " }}{{ end }}"
                "{{ $sys = print $sys " + go_string(style.header) + " $list " + go_string(style.footer)
                + " }}{{ end }}")
    if g.t.thinking == "qwen3":
        out += ("{{ $think := " + ("true" if g.thinking else "false") + " }}"
                "{{ if .IsThinkSet }}{{ $think = .Think }}{{ end }}"
                '{{ $lastUser := -1 }}{{ range $i, $m := $msgs }}{{ if eq $m.Role "user" }}'
                "{{ $lastUser = $i }}{{ end }}{{ end }}")
    return out


def _user_turn(g: GoParts) -> str:
    """A user or tool message; the first opens with the prefix and the system; a last one ends
    with the assistant header (in the user format) and the generation prefix."""
    t = g.t
    first = g.fill(t.prefix, first=True)
    system_block = g.fill(t.system, "{{ $sys }}")
    if t.system_style == "block":
        first += system_block if t.always_system else "{{ if $sys }}" + system_block + "{{ end }}"
        content = "{{ $m.Content }}"
    else:  # merge: the system goes in front of the first message's content
        content = "{{ if and (eq $i 0) $sys }}" + system_block + "{{ end }}{{ $m.Content }}"
    lead = "{{ if eq $i 0 }}" + first + "{{ end }}" if first else ""
    starts_here = not g.fill(t.prefix)  # no prefix: a leading bos of the user format is the text's first
    user = g.fill(t.user, content)
    if starts_here and g.add_bos and t.user.startswith("{bos}"):
        user = "{{ if eq $i 0 }}" + g.fill(t.user, content, first=True) + "{{ else }}" + user + "{{ end }}"
    body = user
    if t.observation is not None:
        body = '{{ if eq $m.Role "tool" }}' + g.fill(t.observation, content) + "{{ else }}" + user + "{{ end }}"
    gen = text(t.generation_prefix)
    if t.thinking == "qwen3":
        gen += "{{ if not $think }}" + text(EMPTY_THOUGHT) + "{{ end }}"
    tail = "{{ if $last }}" + gen + "{{ end }}" if gen else ""
    return lead + body + tail


def _calls(g: GoParts) -> str:
    """An assistant message's ToolCalls as ToolStyle.calls writes them."""
    style = g.t.tools
    one = (text(style.call_open + '{"name": "') + "{{ $c.Function.Name }}" + text('", "arguments": ')
           + "{{ $c.Function.Arguments }}" + text("}" + style.call_close))
    several = "{{ if gt (len $m.ToolCalls) 1 }}"
    many = several + text(style.list_open) + "{{ end }}" if style.list_open else ""
    close = several + text(style.list_close) + "{{ end }}" if style.list_close else ""
    loop = "{{ range $j, $c := $m.ToolCalls }}{{ if $j }}" + text(style.call_sep) + "{{ end }}" + one + "{{ end }}"
    return g.fill(g.t.function + g.t.suffix, many + loop + close)


def _assistant_turn(g: GoParts) -> str:
    t = g.t
    answer = g.fill(t.assistant + t.suffix, "{{ $m.Content }}")
    if t.thinking == "qwen3":
        thought = g.fill(t.assistant + t.suffix, text("<think>\n") + "{{ $m.Thinking }}" + text("\n</think>\n\n")
                         + "{{ $m.Content }}")
        empty = text(EMPTY_THOUGHT) + answer
        answer = ("{{ if and (gt $i $lastUser) (or $last $m.Thinking) }}"
                  "{{ if and (not $m.Thinking) (not $think) }}" + empty + "{{ else }}" + thought + "{{ end }}"
                  "{{ else }}" + answer + "{{ end }}")
    if t.tools is not None:
        answer = "{{ if $m.ToolCalls }}" + _calls(g) + "{{ else }}" + answer + "{{ end }}"
    return answer


def to_ollama(bound: BoundTemplate, *, add_bos: bool = False) -> str:
    """`bound` (a built-in template joined to a tokenizer) as an Ollama TEMPLATE; `add_bos`: the
    model's tokenizer puts bos in front of every prompt itself (GGUF add_bos_token)."""
    g = GoParts(bound, add_bos)
    return (_system(g) + "{{ range $i, $m := $msgs }}{{ $last := eq (len (slice $msgs $i)) 1 }}"
            '{{ if eq $m.Role "assistant" }}' + _assistant_turn(g) + "{{ else }}" + _user_turn(g)
            + "{{ end }}{{ end }}")
