"""One template spec, every rendering: for every built-in template and every probe conversation of
the package's one probe set (tuneforge.data.templates.probes: system, multi-turn, whitespace,
thinking, tools; English and Chinese), the training renderer, the Jinja chat_template written on
export (run by transformers) and the Ollama TEMPLATE of the Modelfile (run by tests/export/gotemplate.py,
Go's text/template in Python) give the same text, for the whole chat and for every generation prompt.

Ollama's own limits, stated where they apply: its templates cannot trim (templates that trim are
compared on probes without surrounding whitespace), it prints tool JSON compactly (tool probes are
compared with every JSON value written one canonical way) and it hands a Qwen3 thought over in
`.Thinking`.
"""

from __future__ import annotations

import json

import pytest
from gotemplate import GoJSON, render
from template_probes import TEMPLATE_FAMILY, family_tokenizer

from tuneforge.data.example import Example
from tuneforge.data.encode.tokenize import tokenize_turns
from tuneforge.data.templates import TEMPLATES, get_template
from tuneforge.data.templates.auto import hf_messages
from tuneforge.data.templates.base import split_thought
from tuneforge.data.templates.jinja import to_jinja
from tuneforge.data.templates.ollama import to_ollama
from tuneforge.data.templates.probes import PROBES, TOOL_PROBES, prompts_of
from tuneforge.data.templates.tools import calls, openai_tools

NAMES = sorted({t.name for t in TEMPLATES.values()})
CASES = [pytest.param(name, probe, id=f"{name}-{probe}") for name in NAMES for probe in PROBES
         if not (probe in TOOL_PROBES and TEMPLATES[name].tools is None)]


@pytest.fixture(scope="module")
def bound_for(tiny_tokenizer):
    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name] = get_template(name, family_tokenizer(tiny_tokenizer, TEMPLATE_FAMILY[name]))
        return cache[name]

    return get


def cases_of(example: Example) -> list[tuple[Example, bool]]:
    return [(example, False)] + [(p, True) for p in prompts_of(example)]


def canonical_json(text: str) -> str:
    """Every JSON object or list inside `text` written one way (compact, keys sorted)."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                pass
            else:
                out.append(json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True))
                i = end
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def ollama_request(example: Example, thinking: bool) -> dict:
    """The chat as Ollama hands it to a template: system message first, tool results as 'tool',
    tool calls as ToolCalls, a Qwen3 thought split off into Thinking (Ollama does that itself)."""
    messages = [{"Role": "system", "Content": example.system}] if example.system is not None else []
    for m in example.messages:
        if m.role == "function":
            tool_calls = [{"Function": {"Name": c["name"], "Arguments": GoJSON(c.get("arguments", {}))}}
                          for c in calls(m.content)]
            messages.append({"Role": "assistant", "Content": "", "ToolCalls": tool_calls})
        elif m.role == "assistant" and thinking:
            thought, rest = split_thought(m.content)
            messages.append({"Role": "assistant", "Content": rest, "Thinking": thought or "", "ToolCalls": []})
        else:
            role = {"observation": "tool"}.get(m.role, m.role)
            messages.append({"Role": role, "Content": m.content, "Thinking": "", "ToolCalls": []})
    tools = [GoJSON(t) for t in openai_tools(example.tools)] if example.tools else []
    return {"Messages": messages, "Tools": tools, "Think": False, "IsThinkSet": False}


@pytest.mark.parametrize("name,probe", CASES)
def test_jinja_renders_like_training(bound_for, name, probe):
    bound = bound_for(name)
    tok, jinja = bound.tokenizer, to_jinja(bound)
    for example, generation in cases_of(PROBES[probe]):
        ours = bound.render_text(example, for_generation=generation)
        tools = openai_tools(example.tools) if example.tools else None
        theirs = tok.apply_chat_template(hf_messages(example, example.system), tools=tools, chat_template=jinja,
                                         tokenize=False, add_generation_prompt=generation)
        assert theirs == ours, (probe, generation)
    # training spans tokenize on exact boundaries: prompt + answer + suffix ids are the whole text's ids
    turns = bound.render(PROBES[probe])
    ids = [i for t in tokenize_turns(tok, turns) for i in (*t.prompt, *t.answer, *t.suffix)]
    assert ids == tok(bound.render_text(PROBES[probe]), add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("name,probe", CASES)
def test_ollama_template_renders_like_training(bound_for, name, probe):
    bound = bound_for(name)
    template = TEMPLATES[name]
    if probe == "whitespace" and template.strip:
        # Ollama templates have no trim: compare this template on what trimming gives
        example = PROBES[probe]
        example = Example(messages=[type(m)(m.role, m.content.strip()) for m in example.messages],
                          system=example.system)
    else:
        example = PROBES[probe]
    go = to_ollama(bound)
    same = canonical_json if example.tools else (lambda s: s)
    for chat, generation in cases_of(example):
        ours = bound.render_text(chat, for_generation=generation)
        theirs = render(go, ollama_request(chat, thinking=template.thinking == "qwen3"))
        assert same(theirs) == same(ours), (probe, generation)


@pytest.mark.parametrize("thinking", [True, False])
def test_ollama_think_switch_follows_enable_thinking(bound_for, tiny_tokenizer, thinking):
    """Ollama's `think` (IsThinkSet/Think) overrides the configured enable_thinking, as the Jinja's
    enable_thinking argument does."""
    example = prompts_of(PROBES["single"])[0]
    configured = get_template("qwen3", family_tokenizer(tiny_tokenizer, "qwen"), enable_thinking=not thinking)
    wanted = get_template("qwen3", family_tokenizer(tiny_tokenizer, "qwen"), enable_thinking=thinking)
    request = ollama_request(example, thinking=True) | {"IsThinkSet": True, "Think": thinking}
    text = render(to_ollama(configured), request)
    assert text == wanted.render_text(example, for_generation=True)
    assert text.endswith("<think>\n\n</think>\n\n") != thinking


@pytest.mark.parametrize("name", ["llama3", "llama2", "gemma"])
def test_ollama_leaves_out_the_bos_the_tokenizer_adds(bound_for, name):
    bound = bound_for(name)
    example = PROBES["multi-system"]
    text = render(to_ollama(bound, add_bos=True), ollama_request(example, thinking=False))
    assert bound.bos and not text.startswith(bound.bos)
    assert bound.bos + text == bound.render_text(example)


# ----------------------------------------------------------------------------- the Python renderer vs Go's own

GO_RENDERER = """package main

import (
\t"bufio"
\t"encoding/json"
\t"os"
\t"strings"
\t"text/template"
)

// Ollama's shapes: arguments and tools print themselves as JSON (encoding/json).
type Args map[string]any

func (a Args) String() string { b, _ := json.Marshal(map[string]any(a)); return string(b) }

type Tool map[string]any

func (t Tool) String() string { b, _ := json.Marshal(map[string]any(t)); return string(b) }

type ToolCallFunction struct {
\tName      string
\tArguments Args
}
type ToolCall struct{ Function ToolCallFunction }
type Message struct {
\tRole, Content, Thinking string
\tToolCalls              []ToolCall
}
type Values struct {
\tMessages         []Message
\tTools            []Tool
\tThink, IsThinkSet bool
}
type Case struct {
\tTemplate string
\tData     Values
}

func main() {
\tin := bufio.NewScanner(os.Stdin)
\tin.Buffer(make([]byte, 1<<20), 1<<26)
\tout := json.NewEncoder(os.Stdout)
\tfor in.Scan() {
\t\tvar c Case
\t\tif err := json.Unmarshal(in.Bytes(), &c); err != nil {
\t\t\tpanic(err)
\t\t}
\t\tvar b strings.Builder
\t\tt, err := template.New("").Parse(c.Template)
\t\tif err == nil {
\t\t\terr = t.Execute(&b, c.Data)
\t\t}
\t\tif err != nil {
\t\t\tout.Encode(map[string]string{"error": err.Error()})
\t\t\tcontinue
\t\t}
\t\tout.Encode(map[string]string{"text": b.String()})
\t}
}
"""


def plain(value):
    """The request as JSON for the Go program (GoJSON values as what they hold)."""
    if isinstance(value, GoJSON):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def test_python_renderer_agrees_with_go_text_template(bound_for, tmp_path):
    """Where a Go toolchain is installed, Go's own text/template renders every Ollama template on every
    probe and generation prompt exactly as tests/export/gotemplate.py does (CI has no Go: there the
    Python renderer above is the check)."""
    import shutil
    import subprocess

    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain here (apt-get install golang-go): the Python renderer is checked without it")
    (tmp_path / "go.mod").write_text("module render\n\ngo 1.19\n")
    (tmp_path / "main.go").write_text(GO_RENDERER)
    env = {"GOCACHE": str(tmp_path / "cache"), "GOPATH": str(tmp_path / "gopath"), "HOME": str(tmp_path),
           "PATH": "/usr/bin:/bin", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    built = subprocess.run([go, "build", "-o", "render", "."], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    cases, expected = [], []
    for name in NAMES:
        template = TEMPLATES[name]
        go_template = to_ollama(bound_for(name))
        for probe, example in PROBES.items():
            if probe in TOOL_PROBES and template.tools is None:
                continue
            for chat, _ in cases_of(example):
                request = ollama_request(chat, thinking=template.thinking == "qwen3")
                cases.append(json.dumps({"Template": go_template, "Data": plain(request)}, ensure_ascii=False))
                expected.append(render(go_template, request))
    done = subprocess.run([str(tmp_path / "render")], input="\n".join(cases) + "\n", capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(expected) > 200
    for result, python in zip(results, expected):
        assert result == {"text": python}
