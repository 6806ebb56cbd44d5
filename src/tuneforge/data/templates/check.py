"""Does the chosen template render like the tokenizer's own chat_template? Say so when not."""

from __future__ import annotations

from tuneforge.data.templates import BoundTemplate
from tuneforge.data.templates.auto import hf_messages
from tuneforge.data.templates.probes import CHAT_PROBES

# Two of the package's probes (data/templates/probes.py): one with a system prompt, one multi-turn without.
PROBES = [CHAT_PROBES["single-system"], CHAT_PROBES["multi"]]


def _snippet(text: str, at: int) -> str:
    return repr(text[max(at - 15, 0):at + 25])


def compare_with_tokenizer(bound: BoundTemplate) -> str | None:
    """None when they agree (or the tokenizer has no chat_template); otherwise one line."""
    tok = bound.tokenizer
    if bound.name == "auto" or not getattr(tok, "chat_template", None):
        return None
    for probe in PROBES:
        ours = bound.render_text(probe)
        # Only the user's configured default_system is given to the tokenizer's template: the
        # template's own default (Qwen's "You are Qwen...") must come from the tokenizer's
        # template too, or it is a difference worth reporting.
        system = probe.system if probe.system is not None else bound.default_system
        try:
            theirs = tok.apply_chat_template(hf_messages(probe, system or None), tokenize=False)
        except Exception:  # noqa: BLE001 - a template that cannot render this probe says nothing useful
            continue
        if ours != theirs:
            at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            return (f"template '{bound.name}' renders differently from the tokenizer's own chat_template "
                    f"(at char {at}: ours {_snippet(ours, at)} vs tokenizer {_snippet(theirs, at)}); fine for "
                    "a base model, but for a chat model use its family's template or template: auto")
    return None
