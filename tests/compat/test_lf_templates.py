"""The template-mismatch line is for real differences: not for a base model whose tokenizer ships a generic
ChatML placeholder (Qwen2.5's base models with template: qwen, as LLaMA-Factory's tutorial has it)."""

from __future__ import annotations

import pytest

from conftest import CHAT_TEMPLATES, need_shared

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def tokenizer_with(tiny_tokenizer, jinja: str):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = jinja
    return tok


@pytest.mark.parametrize("template", ["qwen", "qwen3_nothink"])
def test_no_warning_for_a_generic_chatml_tokenizer_template(tiny_tokenizer, template):
    from tuneforge.data.templates import get_template
    from tuneforge.data.templates.check import compare_with_tokenizer, generic_default

    need_shared()
    instruct = (CHAT_TEMPLATES / "qwen2.5-instruct.jinja").read_text(encoding="utf-8")
    base = instruct.replace(QWEN_SYSTEM, "You are a helpful assistant.")  # what Qwen2.5 base models ship
    assert base != instruct
    tok = tokenizer_with(tiny_tokenizer, base)
    assert generic_default(tok)
    assert compare_with_tokenizer(get_template(template, tok)) is None


def test_a_chat_models_own_template_still_warns_when_it_differs(tiny_tokenizer):
    from tuneforge.data.templates import get_template
    from tuneforge.data.templates.check import compare_with_tokenizer, generic_default

    need_shared()
    tok = tokenizer_with(tiny_tokenizer, (CHAT_TEMPLATES / "qwen2.5-instruct.jinja").read_text(encoding="utf-8"))
    assert not generic_default(tok)
    assert compare_with_tokenizer(get_template("qwen", tok)) is None  # the family's template: agrees
    line = compare_with_tokenizer(get_template("qwen3_nothink", tok))  # no default system: differs
    assert line is not None and line.startswith("template 'qwen3_nothink' renders differently")
