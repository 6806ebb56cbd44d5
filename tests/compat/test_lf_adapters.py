"""An adapter trained on another base model, loaded for chat or export: one line naming both models."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory, tiny_path):
    """An untrained LoRA adapter of the tiny model (hidden size 128)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("adapter") / "tiny_lora"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_path), LoraConfig(r=4, target_modules=["q_proj"]))
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("command", ["chat", "export"])
def test_an_adapter_of_another_base_is_one_line_naming_both(command, tiny_adapter, tiny_path, tmp_path, monkeypatch,
                                                            capsys):
    from tuneforge.cli.main import run
    from tuneforge.model.tiny_archs import ARCHS, ensure_arch

    other = ensure_arch(next(iter(ARCHS)))  # hidden size 64
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))  # noqa: SIM115 - chat reads prompts from stdin
    monkeypatch.setattr(sys, "argv", ["tuneforge", command, "--model_name_or_path", str(other),
                                      "--adapter_name_or_path", str(tiny_adapter), "--template", "qwen",
                                      "--export_dir", str(tmp_path / "merged")])
    with pytest.raises(SystemExit) as exited:
        run()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert exited.value.code == 2 and "Traceback" not in err and len(lines) == 1, err[-2000:]
    assert f"adapter '{tiny_adapter}' was trained on {tiny_path}" in lines[0]
    assert f"does not fit {other}" in lines[0] and "size mismatch" in lines[0]
    assert len(lines[0]) < 700
