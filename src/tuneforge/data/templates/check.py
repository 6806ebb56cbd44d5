"""Does the chosen template render like the tokenizer's own chat_template? Say so when not."""

from __future__ import annotations

from tuneforge.data.templates import BoundTemplate
from tuneforge.data.templates.auto import hf_messages
from tuneforge.data.templates.probes import CHAT_PROBES

# Two of the package's probes (data/templates/probes.py): one with a system prompt, one multi-turn without.
PROBES = [CHAT_PROBES["single-system"], CHAT_PROBES["multi"]]


def _snippet(text: str, at: int) -> str:
    return repr(text[max(at - 15, 0):at + 25])


# What tokenizers of base models ship as a placeholder: plain ChatML with "You are a helpful assistant." as
# the default system prompt (Qwen2.5's base models). Not a format to match: no warning. (ChatML without a
# default system is Qwen3-2507's own chat format, so it is not counted as generic.)
GENERIC_SYSTEMS = ("You are a helpful assistant.",)


def _tokenizer_text(tok, probe, system: str | None) -> str | None:
    try:
        return tok.apply_chat_template(hf_messages(probe, system or None), tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render this probe says nothing useful
        return None


def generic_default(tok) -> bool:
    """The tokenizer's chat_template is a generic ChatML placeholder (renders as plain ChatML on every probe)."""
    from tuneforge.config.errors import ConfigError
    from tuneforge.data.templates import get_template

    for system in GENERIC_SYSTEMS:
        try:
            plain = get_template("qwen", tok, default_system=system)
        except ConfigError:  # no ChatML tokens: not ChatML
            return False
        if all(_tokenizer_text(tok, probe, probe.system) == plain.render_text(probe) for probe in PROBES):
            return True
    return False


def compare_with_tokenizer(bound: BoundTemplate) -> str | None:
    """None when they agree (or the tokenizer has no chat_template, or a generic one); otherwise one line."""
    tok = bound.tokenizer
    if bound.name == "auto" or not getattr(tok, "chat_template", None):
        return None
    line = _difference(bound)
    return None if line is None or generic_default(tok) else line


def _difference(bound: BoundTemplate) -> str | None:
    tok = bound.tokenizer
    for probe in PROBES:
        ours = bound.render_text(probe)
        # Only the user's configured default_system is given to the tokenizer's template: the
        # template's own default (Qwen's "You are Qwen...") must come from the tokenizer's
        # template too, or it is a difference worth reporting.
        system = probe.system if probe.system is not None else bound.default_system
        theirs = _tokenizer_text(tok, probe, system)
        if theirs is None:
            continue
        if ours != theirs:
            at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            return (f"template '{bound.name}' renders differently from the tokenizer's own chat_template "
                    f"(at char {at}: ours {_snippet(ours, at)} vs tokenizer {_snippet(theirs, at)}); fine for "
                    "a base model, but for a chat model use its family's template or template: auto")
    return None
