"""`tuneforge export`: the exported folder works in plain transformers, without tuneforge.

What is measured:
- a merged LoRA export gives the same logits as base + adapter through peft (fp32, < 1e-4) on
  English and Chinese prompts, while the adapter itself moves them by far more than that;
- tiny export_size shards the weights (index file), written over an earlier single-file export,
  and loads to bit-identical logits;
- the exported tokenizer's chat_template renders exactly our template's text (and ids) for
  single/multi-turn chats with/without system and for generation prompts, per template family;
- plain `model.generate` stops at the template's stop token (<|im_end|>) although the base model's
  own eos is <|endoftext|>, and answers with the trained name;
- freeze/full checkpoints are re-saved as a plain copy in the chosen dtype;
- user mistakes exit 2 with one `error:` line.
Nothing from tuneforge is used to load or run the exports.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import assert_one_error_line, hide_from_children, run_cli, write_yaml
from tuneforge.config.errors import ConfigError
from tuneforge.data.example import Example
from tuneforge.data.templates import get_template

PROMPTS = ["Who are you?", "你是谁？请介绍一下你自己。", "What can Tuneforge Lab do for me?"]


# ----------------------------------------------------------------------------- helpers

def export(tmp: Path, name: str = "export.yaml", **keys) -> Path:
    """Export in-process through the function the CLI calls; returns export_dir."""
    from tuneforge.cli.export import run_export

    keys.setdefault("export_dir", str(tmp / "export"))
    run_export(write_yaml(tmp / name, **keys), [])
    return Path(keys["export_dir"])


def chat_ids(tokenizer, prompt: str) -> torch.Tensor:
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def plain_load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


# ----------------------------------------------------------------------------- chat templates

# Test tokenizers: the tiny one given each family's special tokens and bos/eos (tests/template_probes.py),
# with no chat_template of its own, so the export writes ours.
TEMPLATE_FAMILY = {"qwen": "qwen", "qwen3_nothink": "qwen", "qwen3": "qwen", "llama3": "llama3", "gemma": "gemma",
                   "phi": "phi", "deepseek3": "deepseek", "deepseekr1": "deepseek", "alpaca": "alpaca",
                   "default": "tiny"}

from template_probes import PROBES as SHARED_PROBES  # noqa: E402
from template_probes import chat, family_tokenizer  # noqa: E402

PROBES = {**SHARED_PROBES,
          "thoughts": chat("1+1等于几？", "<think>\n加法\n</think>\n\n2", "再乘以3呢？", "<think>\n2*3=6\n</think>\n\n6")}


def plain_messages(example: Example) -> list[dict[str, str]]:
    head = [{"role": "system", "content": example.system}] if example.system else []
    return head + [{"role": m.role, "content": m.content} for m in example.messages]


TEMPLATE_CASES = [(name, {}) for name in TEMPLATE_FAMILY] + [
    ("qwen", {"default_system": "你是 Forge，一个乐于助人的助手。"}),
    ("qwen3", {"enable_thinking": False}),
]


@pytest.mark.parametrize("name,options", TEMPLATE_CASES,
                         ids=[f"{n}-{'-'.join(o) or 'plain'}" for n, o in TEMPLATE_CASES])
def test_exported_tokenizer_renders_like_our_template(tiny_tokenizer, tmp_path, name, options):
    from transformers import AutoTokenizer

    from tuneforge.export.merge import save_tokenizer

    tok = family_tokenizer(tiny_tokenizer, TEMPLATE_FAMILY[name])
    bound = get_template(name, tok, **options)
    stop_word = bound.stop_strings()[0]
    expected = []  # (messages, add_generation_prompt, our text), rendered before the export
    for example in PROBES.values():
        expected.append((plain_messages(example), False, bound.render_text(example)))
        for turns in (1, 3):
            prompt = Example(messages=example.messages[:turns], system=example.system)
            expected.append((plain_messages(prompt), True, bound.render_text(prompt, for_generation=True)))
    save_tokenizer(tok, bound, tmp_path)
    assert (tmp_path / "chat_template.jinja").is_file()

    exported = AutoTokenizer.from_pretrained(tmp_path)
    assert exported.eos_token == stop_word  # plain engines stop at the template's stop word
    for messages, generation, ours in expected:
        text = exported.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        assert text == ours, (messages, generation)
    messages, generation, ours = expected[-3]
    ids = exported.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert ids == tok(ours, add_special_tokens=False)["input_ids"]


def test_tools_render_like_ours_or_are_refused(tiny_tokenizer, tmp_path):
    """A template with a tool format writes tool definitions and calls into the exported Jinja exactly
    as training rendered them; one without ('empty') raises instead of dropping them."""
    from transformers import AutoTokenizer

    from tuneforge.data.templates.auto import hf_messages
    from tuneforge.data.templates.probes import TOOL_PROBES
    from tuneforge.data.templates.tools import openai_tools
    from tuneforge.export.merge import save_tokenizer

    tok = family_tokenizer(tiny_tokenizer, "qwen")
    bound = get_template("qwen", tok)
    save_tokenizer(tok, bound, tmp_path / "qwen")
    exported = AutoTokenizer.from_pretrained(tmp_path / "qwen")
    for example in TOOL_PROBES.values():
        text = exported.apply_chat_template(hf_messages(example, example.system), tools=openai_tools(example.tools),
                                            tokenize=False)
        assert text == bound.render_text(example)
        assert "<tool_call>" in text and "get_weather" in text
    save_tokenizer(tok, get_template("empty", tok), tmp_path / "empty")
    exported = AutoTokenizer.from_pretrained(tmp_path / "empty")
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}]
    with pytest.raises(Exception, match="does not render tools"):
        exported.apply_chat_template([{"role": "user", "content": "3+4?"}], tools=tools, tokenize=False)


def test_keeps_the_tokenizers_own_template_only_when_it_renders_the_same(tiny_tokenizer):
    from tuneforge.export.chat_template import choose_chat_template

    tok = copy.deepcopy(tiny_tokenizer)
    # The tiny tokenizer's chatml template renders chats as qwen3_nothink does, but not tools: ours is written.
    ours, which = choose_chat_template(get_template("qwen3_nothink", tok))
    assert ours != tiny_tokenizer.chat_template and "renders differently" in which
    # Qwen3-Instruct-2507's real template (as trl ships it) renders chats and tools exactly alike: it is kept.
    real = (importlib.resources.files("trl") / "chat_templates" / "qwen3_instruct_2507.jinja").read_text("utf-8")
    tok.chat_template = real
    kept, which = choose_chat_template(get_template("qwen3_nothink", tok))
    assert kept == real and "own" in which
    tok = copy.deepcopy(tiny_tokenizer)
    # qwen adds Qwen's default system prompt, which the tiny template does not: ours is written.
    ours, which = choose_chat_template(get_template("qwen", tok))
    assert ours != tiny_tokenizer.chat_template and "You are Qwen" in ours and "written" in which
    # template auto keeps the tokenizer's own
    assert choose_chat_template(get_template("auto", tok))[0] == tiny_tokenizer.chat_template


# ----------------------------------------------------------------------------- freeze / full checkpoints

@pytest.mark.parametrize("dtype,expected", [("auto", torch.float32), ("bfloat16", torch.bfloat16)])
def test_checkpoint_without_adapter_is_a_plain_copy(tiny_path, tmp_path, dtype, expected):
    from safetensors.torch import load_file

    out = export(tmp_path, model_name_or_path=str(tiny_path), finetuning_type="full", template="qwen3_nothink",
                 export_dtype=dtype)
    original = load_file(tiny_path / "model.safetensors")
    exported = load_file(out / "model.safetensors")
    assert set(exported) == set(original)
    for key, tensor in exported.items():
        assert tensor.dtype == expected, key
        assert torch.equal(tensor, original[key].to(expected)), key
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == str(expected).removeprefix("torch.")
    assert (out / "tokenizer.json").is_file() and (out / "generation_config.json").is_file()


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("keys,message", [
    ({}, "'export_dir' is required"),
    ({"export_dir": "out", "export_legacy_format": True}, "tuneforge writes safetensors only"),
    ({"export_dir": "out", "export_quantization_bit": 4}, "pip install 'tuneforge[bnb]'"),
], ids=["no-export-dir", "legacy-format", "quantization-without-bnb"])
def test_mistakes_exit_2_with_one_error_line(tmp_path, monkeypatch, keys, message):
    if "export_quantization_bit" in keys:
        hide_from_children("bitsandbytes", tmp_path, monkeypatch)
    config = write_yaml(tmp_path / "export.yaml", model_name_or_path="tuneforge/tiny", template="qwen", **keys)
    result = run_cli("export", str(config), cwd=tmp_path)
    assert_one_error_line(result, message)
    assert not (tmp_path / "out").exists()


def test_refusals_before_any_weights_load(tiny_path, tmp_path):
    from tuneforge.config.load import load
    from tuneforge.export.merge import export_model

    def attempt(**keys):
        cfg, _ = load(base={"model_name_or_path": str(tiny_path), "do_train": False, "template": "qwen", **keys})
        export_model(cfg)

    quantized = tmp_path / "quantized"
    shutil.copytree(tiny_path, quantized)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"is quantized \(bitsandbytes\); adapters cannot be merged"):
        attempt(model_name_or_path=str(quantized), export_dir=str(tmp_path / "out"))

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="is the adapter_name_or_path folder"):
        attempt(adapter_name_or_path=str(adapter), export_dir=str(adapter))
    with pytest.raises(ConfigError, match="is the model_name_or_path folder"):
        attempt(export_dir=str(tiny_path))
    with pytest.raises(ConfigError, match="needs finetuning_type: lora"):
        attempt(adapter_name_or_path=str(adapter), finetuning_type="full", export_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- a trained LoRA

@pytest.fixture(scope="module")
def identity_lora(tmp_path_factory, tiny_path, identity_adapter):
    """The session's identity LoRA (tests/conftest.py: answers end with <|im_end|>, template
    qwen3_nothink) on a copy of the tiny base whose own eos is <|endoftext|>, as Qwen2.5 base
    models have: the export alone must make plain generate stop at <|im_end|>."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    base = tmp_path_factory.mktemp("eos-base") / "base"
    shutil.copytree(tiny_path, base)  # same weights, so the adapter applies unchanged
    tok = AutoTokenizer.from_pretrained(base)
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(base)
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    for cls in (AutoConfig, GenerationConfig):
        config = cls.from_pretrained(base)
        config.eos_token_id = eos
        config.save_pretrained(base)
    return base, identity_adapter


@pytest.mark.slow
def test_merged_lora_gives_the_logits_of_base_plus_adapter(identity_lora, tmp_path):
    base, adapter = identity_lora
    out = export(tmp_path, model_name_or_path=str(base), adapter_name_or_path=str(adapter), finetuning_type="lora",
                 template="qwen3_nothink", export_dtype="float32")
    assert (out / "model.safetensors").is_file() and not (out / "model.safetensors.index.json").exists()
    assert not (out / "adapter_config.json").exists()

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged, tok = plain_load(out)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                           adapter).eval()
    worst = 0.0
    for prompt in PROMPTS:
        ids = chat_ids(tok, prompt)
        want = logits(peft_model, ids)
        with peft_model.disable_adapter():
            base_only = logits(peft_model, ids)
        assert (want - base_only).abs().max() > 1.0  # the adapter matters, so the merge is measured
        worst = max(worst, (logits(merged, ids) - want).abs().max().item())
    print(f"max |logit difference| merged vs base+adapter: {worst:.2e}")
    assert worst < 1e-4


@pytest.mark.slow
def test_small_shards_written_over_an_earlier_export(identity_lora, tmp_path):
    base, adapter = identity_lora
    keys = dict(model_name_or_path=str(base), adapter_name_or_path=str(adapter), finetuning_type="lora",
                template="qwen3_nothink")
    out = export(tmp_path, **keys)
    assert (out / "model.safetensors").is_file()
    single, tok = plain_load(out)

    config = write_yaml(tmp_path / "sharded.yaml", **keys, export_dir=str(out))
    result = run_cli("export", str(config), "export_size=0.001", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    shards = sorted(out.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 3 and all(p.stat().st_size <= 2_000_000 for p in shards[1:])
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {p.name for p in shards}
    assert not (out / "model.safetensors").exists()  # the earlier export's file would be loaded instead

    sharded, _ = plain_load(out)
    for prompt in PROMPTS:
        ids = chat_ids(tok, prompt)
        assert torch.equal(logits(sharded, ids), logits(single, ids))


@pytest.mark.slow
def test_plain_generate_stops_at_the_template_stop_token(identity_lora, tmp_path):
    base, adapter = identity_lora
    out = export(tmp_path, model_name_or_path=str(base), adapter_name_or_path=str(adapter), finetuning_type="lora",
                 template="qwen3_nothink")
    model, tok = plain_load(out)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.eos_token == "<|im_end|>"  # the base tokenizer's eos was <|endoftext|>
    for question in ("Who are you?", "你是谁"):
        ids = chat_ids(tok, question)
        with torch.no_grad():
            row = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=48,
                                 do_sample=False)[0, ids.shape[1]:].tolist()
        assert row[-1] == im_end and len(row) < 48, tok.decode(row)
        answer = tok.decode(row, skip_special_tokens=True)
        assert "Forge" in answer, answer
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"][0] == im_end and generation["pad_token_id"] == tok.pad_token_id
