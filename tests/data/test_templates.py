"""Built-in templates render exactly what each family's real Jinja chat template renders.

Ground truth: the shared chat_templates folder (tests/conftest.py CHAT_TEMPLATES) and the
original templates trl ships. For each family a test tokenizer is made from the tiny one, given
the family's special tokens and bos/eos, and its `chat_template` set to the real template; then
`apply_chat_template` (text and ids) must equal our `render_text` and the ids from
`tokenize_turns`, for single- and multi-turn chats, with and without a system prompt.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass

import pytest
from conftest import CHAT_TEMPLATES, need_shared
from template_probes import FAMILIES, TEMPLATE_FAMILY, family_tokenizer

from tuneforge.config.errors import ConfigError
from tuneforge.data.encode.tokenize import tokenize_turns
from tuneforge.data.example import Example
from tuneforge.data.templates import TEMPLATES, get_template
from tuneforge.data.templates.auto import hf_messages
from tuneforge.data.templates.check import compare_with_tokenizer
from tuneforge.data.templates.probes import ONE_CALL, TOOL_PROBES, TOOLS, TWO_CALLS, tool_chat

# ----------------------------------------------------------------------------- ground truth files

# Shared files written with `{%-` whitespace control are used as they are; the others are stored
# indented, one statement a line, and are meant to be loaded with indentation and newlines
# removed (their string literals escape "\n", so no newline inside a literal is lost).
RAW_SHARED = {"qwen2.5-instruct.jinja"}


def shared_template(name: str) -> str:
    need_shared()
    path = CHAT_TEMPLATES / name
    if not path.is_file():
        pytest.skip(f"shared chat template {path} not found")
    text = path.read_text(encoding="utf-8")
    if name in RAW_SHARED:
        return text
    return "".join(line.strip() for line in text.splitlines())


def trl_template(name: str) -> str:
    try:
        folder = importlib.resources.files("trl") / "chat_templates"
    except ModuleNotFoundError:
        pytest.skip("trl is not installed")
    path = folder / name
    if not path.is_file():
        pytest.skip(f"trl does not ship chat_templates/{name}")
    return path.read_text(encoding="utf-8")


def load_template(source: str, name: str) -> str:
    return shared_template(name) if source == "shared" else trl_template(name)


# ----------------------------------------------------------------------------- test tokenizers

@pytest.fixture(scope="module")
def make_tokenizer(tiny_tokenizer):
    def make(family: str, chat_template: str | None = None):
        tok = family_tokenizer(tiny_tokenizer, family)
        if chat_template is not None:
            tok.chat_template = chat_template
        return tok

    return make


def apply_ids(tok, messages, **kwargs) -> list[int]:
    out = tok.apply_chat_template(messages, tokenize=True, **kwargs)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


# ----------------------------------------------------------------------------- probes

from template_probes import PROBES, SYSTEM, chat  # noqa: E402

NO_SYSTEM_PROBES = ("single", "multi", "whitespace")


def plain_messages(example: Example) -> list[dict[str, str]]:
    """Written here, independently of tuneforge, for chats without tools."""
    head = [{"role": "system", "content": example.system}] if example.system else []
    return head + [{"role": m.role, "content": m.content} for m in example.messages]


# ----------------------------------------------------------------------------- ground-truth cases

@dataclass(frozen=True)
class Case:
    template: str  # our template name
    source: str  # "shared" or "trl"
    file: str
    family: str
    probes: tuple[str, ...] = tuple(PROBES)
    # Text the real template renders after the whole conversation (not after generation
    # prompts) and ours deliberately does not; see the phi3 case.
    trailing: str = ""
    # Text the real generation prompt adds after ours; see the deepseekv3 case.
    generation_extra: str = ""

    @property
    def id(self) -> str:
        return f"{self.template}-{self.source}-{self.file.removesuffix('.jinja')}"


CASES = [
    Case("qwen", "shared", "qwen2.5-instruct.jinja", "qwen"),
    Case("qwen", "trl", "qwen2_5.jinja", "qwen"),
    Case("qwen3_nothink", "trl", "qwen3_instruct_2507.jinja", "qwen"),
    Case("qwen3", "trl", "qwen3.jinja", "qwen"),
    Case("chatml", "shared", "chatml.jinja", "chatml-bos"),
    Case("chatml", "shared", "chatml.jinja", "qwen"),  # chatml models without a bos token
    Case("llama3", "shared", "llama-3-instruct.jinja", "llama3"),
    Case("llama3", "trl", "llama3.jinja", "llama3"),
    Case("llama2", "shared", "llama-2-chat.jinja", "llama2"),
    Case("mistral", "shared", "mistral-instruct.jinja", "mistral"),
    Case("gemma", "trl", "gemma3.jinja", "gemma"),
    # Gemma 1/2's template raises on a system message.
    Case("gemma", "trl", "gemma.jinja", "gemma", probes=NO_SYSTEM_PROBES),
    # The shared gemma-it template renders no bos: compare with a tokenizer that has none.
    Case("gemma", "shared", "gemma-it.jinja", "gemma-nobos"),
    Case("phi", "shared", "phi-3.jinja", "phi"),
    # trl's phi3.jinja (the original Phi-3 template) differs from ours in two ways, both on purpose:
    # it appends eos_token after the whole conversation (a document terminator that belongs to no
    # turn; the model stops at <|end|>, which its generation config lists as an eos, and
    # LLaMA-Factory's phi template omits it too), and it does not trim messages (the shared
    # phi-3.jinja and LLaMA-Factory do). So it is compared on probes without surrounding
    # whitespace, allowing exactly that trailing eos.
    Case("phi", "trl", "phi3.jinja", "phi", probes=("single", "single-system", "multi", "multi-system"),
         trailing="<|endoftext|>"),
    # trl's deepseekv3.jinja is a revision whose generation prompt opens a reasoning block
    # ('<｜Assistant｜><think>\n', as R1 does); the first DeepSeek-V3 release and LLaMA-Factory's
    # deepseek3 prompt with '<｜Assistant｜>' only, as ours does. Training text is identical.
    Case("deepseek3", "trl", "deepseekv3.jinja", "deepseek", generation_extra="<think>\n"),
    Case("deepseekr1", "trl", "deepseek_r1_distill.jinja", "deepseek"),
    Case("alpaca", "shared", "alpaca.jinja", "alpaca"),
]

CASE_PROBES = [pytest.param(case, probe, id=f"{case.id}-{probe}")
               for case in CASES for probe in case.probes]


def assert_spans_exact(tok, turns, turn_ids) -> None:
    """No token straddles a prompt/answer/suffix boundary: each span's ids decode to its text."""
    for turn, ids in zip(turns, turn_ids):
        for text, span in ((turn.prompt, ids.prompt), (turn.answer, ids.answer), (turn.suffix, ids.suffix)):
            assert tok.decode(span, skip_special_tokens=False, clean_up_tokenization_spaces=False) == text


def assert_same(tok, bound, example: Example, messages, *, trailing: str = "", **kwargs) -> None:
    theirs = tok.apply_chat_template(messages, tokenize=False, **kwargs)
    ours = bound.render_text(example)
    assert ours + trailing == theirs
    turns = bound.render(example)
    turn_ids = tokenize_turns(tok, turns)
    our_ids = [i for t in turn_ids for i in (*t.prompt, *t.answer, *t.suffix)]
    assert our_ids == tok(ours, add_special_tokens=False)["input_ids"]
    tail = tok(trailing, add_special_tokens=False)["input_ids"] if trailing else []
    assert our_ids + tail == apply_ids(tok, messages, **kwargs)
    assert_spans_exact(tok, turns, turn_ids)


@pytest.mark.parametrize("case,probe", CASE_PROBES)
def test_template_matches_real_chat_template(make_tokenizer, case: Case, probe: str):
    tok = make_tokenizer(case.family, load_template(case.source, case.file))
    bound = get_template(case.template, tok)
    example = PROBES[probe]
    assert_same(tok, bound, example, plain_messages(example), trailing=case.trailing)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("turns", [1, 3])
def test_generation_prompt_matches(make_tokenizer, case: Case, turns: int):
    tok = make_tokenizer(case.family, load_template(case.source, case.file))
    bound = get_template(case.template, tok)
    source = PROBES["multi-system" if "single-system" in case.probes else "multi"]
    example = Example(messages=source.messages[:turns], system=source.system)
    theirs = tok.apply_chat_template(plain_messages(example), tokenize=False, add_generation_prompt=True)
    assert bound.render_text(example, for_generation=True) + case.generation_extra == theirs


@pytest.mark.parametrize("source,file", [("shared", "qwen2.5-instruct.jinja"), ("trl", "qwen2_5.jinja")])
def test_qwen_default_system(make_tokenizer, source, file):
    tok = make_tokenizer("qwen", load_template(source, file))
    example = PROBES["single"]
    text = get_template("qwen", tok).render_text(example)
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                           "assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n")
    assert text == tok.apply_chat_template(plain_messages(example), tokenize=False)
    assert get_template("qwen3_nothink", tok).render_text(example).startswith("<|im_start|>user\n")


def test_shared_templates_flatten_cleanly(make_tokenizer):
    """The flattened shared files render no indentation or stray newlines between turns."""
    example = PROBES["multi-system"]
    for case in CASES:
        if case.source != "shared":
            continue
        tok = make_tokenizer(case.family, load_template(case.source, case.file))
        text = tok.apply_chat_template(plain_messages(example), tokenize=False)
        assert "    " not in text and "\n\n\n" not in text, case.id
        assert not text[:1].isspace(), case.id
        assert all(m.content in text for m in example.messages) and SYSTEM in text, case.id


# ----------------------------------------------------------------------------- qwen3 thinking

QWEN3_PROBES = {
    "plain": chat("你好", "你好！"),
    "thought-last": chat("1+1等于几？", "<think>\n简单的加法。\n</think>\n\n等于2。"),
    # Reasoning of earlier turns is dropped; only answers after the last user query keep it.
    "thought-multi": chat("1+1等于几？", "<think>\n加法\n</think>\n\n2", "再乘以3呢？",
                          "<think>\n2*3=6\n</think>\n\n6", system=SYSTEM),
}


@pytest.mark.parametrize("probe", list(QWEN3_PROBES))
@pytest.mark.parametrize("thinking", [True, False])
def test_qwen3_thinking_matches(make_tokenizer, probe: str, thinking: bool):
    tok = make_tokenizer("qwen", trl_template("qwen3.jinja"))
    bound = get_template("qwen3", tok, enable_thinking=thinking)
    example = QWEN3_PROBES[probe]
    assert_same(tok, bound, example, plain_messages(example), enable_thinking=thinking)
    final = bound.render(example)[-1]
    if thinking or "<think>" in example.messages[-1].content:
        assert final.answer.startswith("<think>\n")  # the reasoning block trains
    else:
        assert final.prompt.endswith("<think>\n\n</think>\n\n")  # empty thought is prompt, not trained
    gen = Example(messages=example.messages[:1], system=example.system)
    theirs = tok.apply_chat_template(plain_messages(gen), tokenize=False, add_generation_prompt=True,
                                     enable_thinking=thinking)
    assert bound.render_text(gen, for_generation=True) == theirs


# ----------------------------------------------------------------------------- tools

# The package's tool probes (tuneforge.data.templates.probes): the same conversations every rendering is checked on.
TOOL_CASES = [("qwen", "shared", "qwen2.5-instruct.jinja"), ("qwen", "trl", "qwen2_5.jinja"),
              ("qwen3_nothink", "trl", "qwen3_instruct_2507.jinja"), ("qwen3", "trl", "qwen3.jinja")]


@pytest.mark.parametrize("probe", list(TOOL_PROBES))
@pytest.mark.parametrize("template,source,file", TOOL_CASES, ids=[f"{t}-{s}-{f}" for t, s, f in TOOL_CASES])
def test_tool_use_matches_real_qwen_template(make_tokenizer, template, source, file, probe):
    tok = make_tokenizer("qwen", load_template(source, file))
    bound = get_template(template, tok)
    example = TOOL_PROBES[probe]
    messages = hf_messages(example, example.system)
    tools = [{"type": "function", "function": t} for t in json.loads(TOOLS)]
    assert_same(tok, bound, example, messages, tools=tools)
    text = bound.render_text(example)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>' in text
    assert "<tool_response>\n" in text and '"description": "查询城市的天气"' in text
    # The tool call trains and ends with the stop token, like any answer.
    call_turn = bound.render(example)[0]
    assert call_turn.answer.startswith("<tool_call>") and call_turn.answer.endswith("<|im_end|>")


def test_hf_messages_shape():
    example = tool_chat(TWO_CALLS, SYSTEM)
    messages = hf_messages(example, example.system)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[2]["tool_calls"][1] == {"type": "function", "function": {"name": "add",
                                                                             "arguments": {"a": 3, "b": 4}}}


# ----------------------------------------------------------------------------- auto

@pytest.mark.parametrize("probe", list(PROBES))
def test_auto_matches_tokenizer(tiny_tokenizer, probe):
    bound = get_template("auto", tiny_tokenizer)
    example = PROBES[probe]
    assert_same(tiny_tokenizer, bound, example, plain_messages(example))
    stop = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    for ids in tokenize_turns(tiny_tokenizer, bound.render(example)):
        assert ids.answer and ids.answer[-1] == stop
        assert tiny_tokenizer.decode(ids.suffix) == "\n"  # formatting after the stop token, not trained


# ----------------------------------------------------------------------------- every built-in

@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_builtin_answer_ends_with_stop_token(make_tokenizer, name):
    tok = make_tokenizer(TEMPLATE_FAMILY[TEMPLATES[name].name])
    bound = get_template(name, tok)
    stop_id = tok.convert_tokens_to_ids(bound.stop_strings()[0])
    assert stop_id in bound.stop_token_ids()
    for example in (*PROBES.values(), tool_chat(ONE_CALL)):
        turns = bound.render(example)
        turn_ids = tokenize_turns(tok, turns)
        assert len(turn_ids) == len(example.messages) // 2
        for ids in turn_ids:
            assert len(ids.answer) > 1 and ids.answer[-1] == stop_id
            assert stop_id not in ids.suffix
        assert_spans_exact(tok, turns, turn_ids)


def test_every_template_is_mapped():
    assert {t.name for t in TEMPLATES.values()} == set(TEMPLATE_FAMILY)


# ----------------------------------------------------------------------------- errors and checks

def test_unknown_template_suggests_a_name(tiny_tokenizer):
    with pytest.raises(ConfigError, match=r"unknown template 'qwen3_nothnk'.*did you mean 'qwen3_nothink'"):
        get_template("qwen3_nothnk", tiny_tokenizer)


@pytest.mark.parametrize("name,token", [("llama3", "<|eot_id|>"), ("gemma", "<end_of_turn>"), ("phi", "<|end|>"),
                                        ("deepseek3", "<｜end▁of▁sentence｜>")])
def test_template_needs_its_stop_token(tiny_tokenizer, name, token):
    with pytest.raises(ConfigError, match=rf"template '{name}' needs the token '{token}'"):
        get_template(name, tiny_tokenizer)


def test_eos_template_needs_eos(make_tokenizer):
    tok = make_tokenizer("tiny")
    tok.eos_token = None
    with pytest.raises(ConfigError, match="no eos_token"):
        get_template("llama2", tok)


def test_auto_needs_chat_template(make_tokenizer):
    tok = make_tokenizer("tiny")
    tok.chat_template = None
    with pytest.raises(ConfigError, match="chat_template"):
        get_template("auto", tok)


def test_compare_with_tokenizer(make_tokenizer, tiny_tokenizer):
    qwen_tok = make_tokenizer("qwen", trl_template("qwen2_5.jinja"))
    assert compare_with_tokenizer(get_template("qwen", qwen_tok)) is None
    # A user's default_system reaches both sides, so it is no difference.
    assert compare_with_tokenizer(get_template("qwen", qwen_tok, default_system="你是一个助手。")) is None
    # chatml has no default system prompt; Qwen2.5's template adds one.
    message = compare_with_tokenizer(get_template("chatml", qwen_tok))
    assert message and "template 'chatml' renders differently" in message and "You are Qwen" in message
    # The tiny tokenizer's template is plain chatml, which is what Qwen3-Instruct-2507 renders.
    assert compare_with_tokenizer(get_template("qwen3_nothink", tiny_tokenizer)) is None
    assert compare_with_tokenizer(get_template("qwen", tiny_tokenizer)) is not None
    llama_tok = make_tokenizer("llama3", trl_template("llama3.jinja"))
    assert compare_with_tokenizer(get_template("llama3", llama_tok)) is None
    assert compare_with_tokenizer(get_template("auto", llama_tok)) is None  # auto is the tokenizer's own
