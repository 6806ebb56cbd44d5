"""Which chat template an export ships, and the stop settings that go with it.

`choose_chat_template(bound)`: the tokenizer's own chat_template when it renders exactly like our
template on the probe set (data/templates/probes.py), ours (data/templates/jinja.py) otherwise.
Ours is checked on the same probes before it is saved.
"""

from __future__ import annotations

from typing import Any

from tuneforge.data.example import Example
from tuneforge.data.templates import BoundTemplate
from tuneforge.data.templates.auto import hf_messages
from tuneforge.data.templates.jinja import to_jinja
from tuneforge.data.templates.probes import CHAT_PROBES, PROBES, THINKING_PROBES, prompts_of
from tuneforge.data.templates.tools import openai_tools


def probes_for(bound: BoundTemplate) -> list[Example]:
    """The probes a rendering of `bound` must agree on: tools only where the template writes them."""
    has_tools = getattr(bound.template, "tools", None) is not None
    chosen = PROBES if has_tools else {**CHAT_PROBES, **THINKING_PROBES}
    return list(chosen.values())


def _renders_like(bound: BoundTemplate, chat_template: str) -> bool:
    """Does `chat_template`, called as a plain user would (no extra kwargs), render every probe and
    generation prompt exactly as `bound` does?"""
    tok = bound.tokenizer
    for probe in probes_for(bound):
        cases = [(probe, False)] + [(p, True) for p in prompts_of(probe)]
        for example, generation in cases:
            tools = openai_tools(example.tools) if example.tools else None
            try:
                theirs = tok.apply_chat_template(hf_messages(example, example.system), tools=tools,
                                                 chat_template=chat_template, tokenize=False,
                                                 add_generation_prompt=generation)
            except Exception:  # noqa: BLE001 - a template that cannot render a plain chat is no match
                return False
            if theirs != bound.render_text(example, for_generation=generation):
                return False
    return True


def choose_chat_template(bound: BoundTemplate) -> tuple[str | None, str]:
    """(chat_template to save, one line saying which). `auto` keeps the tokenizer's own; a built-in
    template keeps the tokenizer's own only when it renders identically, else our Jinja is written."""
    own = getattr(bound.tokenizer, "chat_template", None)
    if bound.name == "auto":
        return own, "the tokenizer's own chat_template (template: auto)"
    if isinstance(own, str) and own and _renders_like(bound, own):
        return own, f"the tokenizer's own chat_template (it renders exactly as template '{bound.name}')"
    ours = to_jinja(bound)
    if not _renders_like(bound, ours):  # a bug in to_jinja, not a user error
        raise RuntimeError(f"the Jinja written for template '{bound.name}' renders differently from it")
    reason = "the tokenizer has none" if not own else "the tokenizer's own renders differently"
    return ours, f"a chat_template written from template '{bound.name}' ({reason})"


def stop_settings(bound: BoundTemplate) -> dict[str, Any]:
    """What the exported tokenizer and generation_config need so plain `generate` stops where
    tuneforge does: every stop token id (the template's stop words, then the tokenizer's eos), and
    the template's first stop word as the tokenizer's eos_token (as LLaMA-Factory does), so engines
    that only read the tokenizer's eos stop too."""
    stops = bound.stop_strings()
    return {"eos_token_ids": bound.stop_token_ids(), "eos_token": stops[0] if stops else bound.eos}
