"""Export for every runtime, from the identity-tuned tiny model (tests/conftest.py identity_adapter:
answers "我是 Forge…" / "I am Forge…", template qwen3_nothink).

What is measured, and where it runs:
- GGUF f16 and q8_0 are converted by llama.cpp's converter (fetched from the llama-cpp-python source
  package; nothing compiled): runs everywhere, CI included. The chat template and the stop token are
  read back from the GGUF metadata (llama.cpp's gguf-py reader); the Modelfile's TEMPLATE, rendered by
  Go's text/template semantics (gotemplate.py), gives the prompt text our template gives, and so does
  the GGUF's chat_template under transformers' Jinja.
- Loading a GGUF back in llama.cpp (greedy answer to "你是谁" equal to transformers') and the k-quant
  q4_k_m need the compiled llama-cpp-python, a 14-minute build on 2 cores that CI does not do: those
  tests run only where it is installed and say so when skipped.
- 4-bit autoround (CPU) reloads in plain transformers with the merged model's greedy answers; it runs
  where auto-round is installed (`tuneforge[dev]` installs it).
- Bad input exits 2 with one line and leaves export_dir as it was.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from conftest import assert_one_error_line, run_cli, write_yaml
from gotemplate import render

from tuneforge.config.errors import ConfigError
from tuneforge.data.example import Example, Message
from tuneforge.data.templates import get_template

HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
NO_LLAMA_CPP = "llama-cpp-python is not installed here (a 14-minute build on 2 cores; CI converts but does not load)"
IDENTITY = {"finetuning_type": "lora", "template": "qwen3_nothink"}


def export(tmp: Path, **keys):
    from tuneforge.cli.export import run_export

    tmp.mkdir(parents=True, exist_ok=True)
    keys.setdefault("export_dir", str(tmp / "export"))
    return run_export(write_yaml(tmp / "export.yaml", **keys), [])


def greedy(model_dir: Path, question: str, tokens: int = 16) -> tuple[list[int], list[int]]:
    """(prompt ids, greedy answer ids) of a transformers model, the prompt through its own chat_template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    text = tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                             do_sample=False)
    return ids[0].tolist(), out[0, ids.shape[1]:].tolist()


@pytest.fixture(scope="module")
def gguf_export(tmp_path_factory, tiny_path, identity_adapter):
    """The identity LoRA merged and exported as f16 GGUF (plus the adapter as a GGUF adapter), then q8_0
    written beside it from the same merged folder."""
    from tuneforge.export.gguf import write_gguf

    tmp = tmp_path_factory.mktemp("gguf")
    result = export(tmp, model_name_or_path=str(tiny_path), adapter_name_or_path=str(identity_adapter),
                    export_gguf="f16", **IDENTITY)
    write_gguf(result.export_dir, "q8_0")
    return result


def test_gguf_files_carry_chat_template_and_stop_token(gguf_export):
    from tuneforge.export.gguf import read_metadata

    out = gguf_export.export_dir
    assert gguf_export.gguf_files == ["model-f16.gguf", "adapter-f32.gguf"]
    assert not list(out.parent.glob(".*partial*")) and not list(out.glob(".*"))  # nothing half-written
    chat_template = (out / "chat_template.jinja").read_text(encoding="utf-8")
    architecture = json.loads((out / "config.json").read_text())["model_type"]  # the tiny model's: qwen2 or llama
    for name, tensor_type in (("model-f16.gguf", "F16"), ("model-q8_0.gguf", "Q8_0")):
        meta = read_metadata(out / name)
        assert meta["general.architecture"] == architecture and tensor_type in meta["tensor_types"]
        assert meta["tokenizer.chat_template"] == chat_template
        assert meta["tokenizer.ggml.eos_token"] == "<|im_end|>"  # the template's stop word
        assert meta["tokenizer.ggml.pre"] == "qwen2"  # chosen from tokenizer.json: the hash is unknown
        assert not meta.get("tokenizer.ggml.add_bos_token", False)  # the Modelfile leaves bos out accordingly
    adapter = read_metadata(out / "adapter-f32.gguf")
    assert adapter["general.type"] == "adapter" and adapter["adapter.type"] == "lora"
    assert (out / "model-q8_0.gguf").stat().st_size < (out / "model-f16.gguf").stat().st_size


def test_modelfile_renders_the_prompt_our_template_renders(gguf_export, tiny_tokenizer):
    from transformers import AutoTokenizer

    from tuneforge.export.gguf import read_metadata

    out = gguf_export.export_dir
    text = (out / "Modelfile").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert "FROM ./model-f16.gguf" in lines and 'PARAMETER stop "<|im_end|>"' in lines
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    bound = get_template("qwen3_nothink", tiny_tokenizer)
    jinja = read_metadata(out / "model-f16.gguf")["tokenizer.chat_template"]
    tok = AutoTokenizer.from_pretrained(out)
    for system in (None, "你是 Forge，一个乐于助人的助手。"):
        example = Example(messages=[Message("user", "你是谁")], system=system)
        ours = bound.render_text(example, for_generation=True)
        messages = ([{"Role": "system", "Content": system}] if system else []) + [
            {"Role": "user", "Content": "你是谁", "Thinking": "", "ToolCalls": []}]
        assert render(template, {"Messages": messages, "Tools": [], "Think": False, "IsThinkSet": False}) == ours
        hf = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "你是谁"}]
        assert tok.apply_chat_template(hf, chat_template=jinja, tokenize=False, add_generation_prompt=True) == ours


def test_every_export_writes_a_modelfile(tiny_path, tmp_path):
    result = export(tmp_path, model_name_or_path=str(tiny_path), finetuning_type="full", template="qwen",
                    default_system="你是 Forge。")
    lines = (result.export_dir / "Modelfile").read_text(encoding="utf-8").splitlines()
    assert "FROM ." in lines and 'SYSTEM """你是 Forge。"""' in lines and 'PARAMETER stop "<|im_end|>"' in lines
    assert result.gguf_files == []


@pytest.mark.skipif(not HAS_LLAMA_CPP, reason=NO_LLAMA_CPP)
@pytest.mark.parametrize("name", ["model-f16.gguf", "model-q8_0.gguf"])
def test_gguf_loads_in_llama_cpp_and_answers_like_transformers(gguf_export, name):
    from tuneforge.export.verify import llama_cpp_greedy

    out = gguf_export.export_dir
    prompt, ours = greedy(out, "你是谁")
    im_end = 2
    theirs = llama_cpp_greedy(out / name, {"q": prompt}, [im_end])["q"]
    ours = ours[:ours.index(im_end) + 1] if im_end in ours else ours
    assert theirs == ours
    assert all(p.equal and not p.different for p in gguf_export.parity)  # the export's own check agreed


@pytest.mark.skipif(not HAS_LLAMA_CPP, reason=NO_LLAMA_CPP)
def test_k_quant_is_written_and_loads(gguf_export):
    from tuneforge.export.gguf import read_metadata, write_gguf
    from tuneforge.export.verify import llama_cpp_greedy

    path = write_gguf(gguf_export.export_dir, "q4_k_m")
    meta = read_metadata(path)
    assert meta["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    prompt, _ = greedy(gguf_export.export_dir, "你是谁")
    assert llama_cpp_greedy(path, {"q": prompt}, [2])["q"]  # it loads and answers


@pytest.mark.skipif(not HAS_LLAMA_CPP, reason=NO_LLAMA_CPP)
def test_gguf_adapter_on_the_base_gives_the_merged_logits(gguf_export, tiny_path, tmp_path):
    """adapter-f32.gguf applied by llama.cpp to the base (as `--lora` / Ollama's ADAPTER do) gives the
    merged model's logits; the adapter itself moves them by far more."""
    import shutil

    import numpy as np
    from llama_cpp import Llama  # type: ignore[import-not-found]
    from transformers import AutoModelForCausalLM

    from tuneforge.export.gguf import write_gguf

    base = tmp_path / "base"
    shutil.copytree(tiny_path, base)
    base_gguf = write_gguf(base, "f32", out_dir=tmp_path)
    out = gguf_export.export_dir
    prompt, _ = greedy(out, "你是谁")
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        want = merged(input_ids=torch.tensor([prompt])).logits[0, -1].numpy()
    worst = {}
    for name, lora in (("with adapter", out / "adapter-f32.gguf"), ("base only", None)):
        llm = Llama(model_path=str(base_gguf), lora_path=str(lora) if lora else None, logits_all=True, n_ctx=256,
                    n_threads=2, verbose=False)
        llm.eval(prompt)
        worst[name] = float(np.abs(np.asarray(llm.scores[len(prompt) - 1]) - want).max())
    print(f"max |logit difference| vs the merged model: {worst}")
    assert worst["with adapter"] < 1e-2 and worst["base only"] > 1.0  # measured: 3.7e-3 and 11.3 (f32 base, f32 adapter)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("auto_round") is None, reason="auto-round is not installed here")
def test_autoround_4bit_reloads_in_transformers_with_the_same_answers(tiny_path, identity_adapter, tmp_path):
    merged = export(tmp_path / "merged", model_name_or_path=str(tiny_path), adapter_name_or_path=str(identity_adapter),
                    **IDENTITY)
    result = export(tmp_path / "q", model_name_or_path=str(tiny_path), adapter_name_or_path=str(identity_adapter),
                    export_quantization_bit=4, export_quantization_method="autoround",
                    export_quantization_dataset="identity", identity_name="Forge", identity_author="Tuneforge Lab",
                    export_quantization_nsamples=8, export_quantization_maxlen=32, export_quantization_iters=20,
                    **IDENTITY)
    out = result.export_dir
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["bits"] == 4 and config["quantization_config"]["quant_method"] == "auto-round"
    assert (out / "model.safetensors").stat().st_size < (merged.export_dir / "model.safetensors").stat().st_size
    for question in ("你是谁", "Who are you?"):
        assert greedy(out, question)[1] == greedy(merged.export_dir, question)[1], question
    # the export's own load-back ran in transformers on its three prompts (a differing one is a warning, not a failure)
    [parity] = result.parity
    assert parity.runtime.startswith("transformers (autoround 4-bit)") and len(parity.equal) + len(parity.different) == 3


# ----------------------------------------------------------------------------- bad input

@pytest.fixture
def earlier_export(tmp_path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_text("an earlier export")
    return out


def untouched(out: Path) -> bool:
    return [p.name for p in out.iterdir()] == ["model.safetensors"] and not list(out.parent.glob(".*partial*"))


@pytest.mark.parametrize("keys,message", [
    ({"export_gguf": "q4_km"}, "export_gguf 'q4_km' is not a GGUF type tuneforge writes; did you mean 'q4_k_m'?"),
    ({"export_quantization_bit": 3, "export_quantization_method": "autoround",
      "export_quantization_dataset": "identity"}, "export_quantization_bit 3 is not supported"),
    ({"export_quantization_bit": 4, "export_quantization_method": "autoround"},
     "calibrates on text: set export_quantization_dataset"),
    ({"export_gguf": "q8_0", "export_quantization_bit": 4, "export_quantization_method": "autoround",
      "export_quantization_dataset": "identity"}, "cannot also take export_quantization_bit"),
], ids=["unknown-gguf-type", "bit-3", "no-calibration-data", "gguf-and-bits"])
def test_mistakes_exit_2_and_leave_export_dir_alone(tmp_path, earlier_export, keys, message):
    if "autoround" in keys.values() and "bit 3" not in message and importlib.util.find_spec("auto_round") is None:
        pytest.skip("auto-round is not installed here (its missing-package line is tested below)")
    config = write_yaml(tmp_path / "export.yaml", model_name_or_path="tuneforge/tiny", template="qwen",
                        export_dir=str(earlier_export), **keys)
    assert_one_error_line(run_cli("export", str(config), cwd=tmp_path), message)
    assert untouched(earlier_export)


def test_quantized_base_is_refused_before_anything_is_written(tiny_path, tmp_path, earlier_export):
    import shutil

    base = tmp_path / "quantized"
    shutil.copytree(tiny_path, base)
    config = json.loads((base / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (base / "config.json").write_text(json.dumps(config))
    yaml_path = write_yaml(tmp_path / "export.yaml", model_name_or_path=str(base), template="qwen",
                           export_dir=str(earlier_export), export_gguf="q8_0")
    assert_one_error_line(run_cli("export", str(yaml_path), cwd=tmp_path), "is quantized (gptq)")
    assert untouched(earlier_export)


def test_missing_pieces_name_the_extra(monkeypatch, tiny_path, tmp_path):
    from tuneforge.config.load import load
    from tuneforge.export import gguf, llama_cpp, quantize_4bit
    from tuneforge.export.merge import plan_export

    def plan(**keys):
        cfg, _ = load(base={"model_name_or_path": str(tiny_path), "do_train": False, "template": "qwen",
                            "export_dir": str(tmp_path / "out"), **keys})
        return plan_export(cfg)

    monkeypatch.setattr(gguf, "has_library", lambda: False)
    with pytest.raises(ConfigError, match=r"export_gguf q4_k_m is quantized by llama.cpp's library.*"
                                          r"pip install 'tuneforge\[gguf\]'"):
        plan(export_gguf="q4_k_m")
    monkeypatch.setitem(quantize_4bit.CALIBRATED, "autoround", ("auto_round_is_missing", "autoround"))
    with pytest.raises(ConfigError, match=r"needs auto_round_is_missing: pip install 'tuneforge\[autoround\]'"):
        plan(export_quantization_bit=4, export_quantization_method="autoround", export_quantization_dataset="identity")
    monkeypatch.setattr(llama_cpp.importlib.util, "find_spec",
                        lambda name, *a: None if name == "sentencepiece" else importlib.util.find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"needs sentencepiece.*pip install 'tuneforge\[gguf\]'"):
        plan(export_gguf="q8_0")
    monkeypatch.undo()
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="holds no convert_hf_to_gguf.py"):
        plan(export_gguf="q8_0")
    assert not (tmp_path / "out").exists()


def test_a_failing_conversion_leaves_export_dir_as_it_was(monkeypatch, tiny_path, tmp_path, earlier_export):
    """The converter fails after the merged model was written (a pre-tokenizer nobody knows): the
    staging folder goes, export_dir keeps the earlier export, the error is one line."""
    from tuneforge.export import gguf

    monkeypatch.setattr(gguf, "PRE_TOKENIZERS", {})
    with pytest.raises(ConfigError, match="pre-tokenizer was not recognized.*none tuneforge knows"):
        export(tmp_path, model_name_or_path=str(tiny_path), finetuning_type="full", template="qwen3_nothink",
               export_dir=str(earlier_export), export_gguf="q8_0")
    assert untouched(earlier_export)
