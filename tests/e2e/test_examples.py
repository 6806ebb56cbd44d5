"""Every example YAML runs with the tiny model substituted (and LLaMA-Factory's data folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import LF_DATA, REPO, SHARED, need_shared, run_cli

EXAMPLES = sorted(p for p in (REPO / "examples").rglob("*.yaml"))
TRAINING = [p for p in EXAMPLES if yaml.safe_load(p.read_text()).get("do_train")]
EXPORT = [p for p in EXAMPLES if yaml.safe_load(p.read_text()).get("export_dir")]
# do_predict without do_train (LLaMA-Factory's predict examples): `tuneforge train` predicts
PREDICT = [p for p in EXAMPLES if yaml.safe_load(p.read_text()).get("do_predict") and p not in TRAINING]
CHAT = [p for p in EXAMPLES if p not in TRAINING + EXPORT + PREDICT]
FAST = ["max_steps=3", "save_strategy=no", "cutoff_len=128", "max_samples=16", "logging_steps=1",
        "per_device_train_batch_size=2", "gradient_accumulation_steps=1", "eval_steps=2"]


REWARD_EXAMPLE = REPO / "examples" / "train_lora" / "qwen2_5_lora_reward.yaml"


def tiny_reward_model(path: Path, tmp_path: Path) -> list[str]:
    """Examples with `reward_model:` (ppo, grpo, rloo) get a tiny one, trained by the rm example, and short answers."""
    if not yaml.safe_load(path.read_text()).get("reward_model"):
        return []
    rm = tmp_path / "rm"
    result = run_cli("train", str(REWARD_EXAMPLE), "model_name_or_path=tuneforge/tiny", f"dataset_dir={LF_DATA}",
                     f"output_dir={rm}", *FAST, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return [f"reward_model={rm}", "max_new_tokens=16"]


def tiny_substitutes(path: Path, tmp_path: Path) -> list[str]:
    """llama3 examples train the tiny model with its own family's template (it has no llama3 tokens); the LLaMA Pro
    example trains a tiny model expanded by `tuneforge expand` (2 new blocks on its 2)."""
    keys = yaml.safe_load(path.read_text())
    extra = ["template=qwen"] if keys.get("template") == "llama3" else []
    if keys.get("use_llama_pro"):
        pro = tmp_path / "tiny-pro"
        result = run_cli("expand", "--model_name_or_path", "tuneforge/tiny", "--output_dir", str(pro), "--num_expand",
                         "2", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        extra += [f"model_name_or_path={pro}", "freeze_trainable_layers=2"]
    return extra


def test_examples_exist():
    assert len(TRAINING) >= 5 and len(CHAT) >= 2 and PREDICT


@pytest.mark.slow
@pytest.mark.parametrize("path", TRAINING, ids=lambda p: str(p.relative_to(REPO / "examples")))
def test_training_example_runs(path: Path, tmp_path):
    """...with `flash_attn: fa2` on a machine without flash-attn: every stage (its policy, reference,
    reward and value models) runs on PyTorch's attention after one note, none asks transformers for fa2."""
    need_shared()
    out = tmp_path / "out"
    result = run_cli("train", str(path), "model_name_or_path=tuneforge/tiny", f"dataset_dir={LF_DATA}",
                     f"output_dir={out}", "flash_attn=fa2", *FAST, *tiny_reward_model(path, tmp_path),
                     *tiny_substitutes(path, tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("flash_attn: fa2 needs flash-attn") == 1, result.stderr[-3000:]
    assert (out / "trainer_log.jsonl").is_file() and (out / "all_results.json").is_file()
    assert (out / "training_args.yaml").is_file()


def quick_adapter(tmp_path: Path) -> Path:
    """A 2-step identity LoRA adapter on the tiny model, for examples that need one."""
    adapter = tmp_path / "adapter"
    trained = run_cli("train", str(REPO / "examples" / "demo" / "identity_lora.yaml"), f"output_dir={adapter}",
                      "max_steps=2", "save_strategy=no", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return adapter


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAT, ids=lambda p: str(p.relative_to(REPO / "examples")))
def test_chat_example_runs(path: Path, tmp_path):
    adapter = quick_adapter(tmp_path)
    result = run_cli("chat", str(path), "model_name_or_path=tuneforge/tiny", f"adapter_name_or_path={adapter}",
                     "max_new_tokens=8", "template=qwen3_nothink", cwd=tmp_path, stdin="hi\n你好\n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Assistant:") == 2


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPORT, ids=lambda p: str(p.relative_to(REPO / "examples")))
def test_export_example_runs(path: Path, tmp_path):
    adapter = quick_adapter(tmp_path)
    out = tmp_path / "export"
    result = run_cli("export", str(path), "model_name_or_path=tuneforge/tiny", f"adapter_name_or_path={adapter}",
                     f"export_dir={out}", *tiny_substitutes(path, tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(out.glob("*.safetensors")) and (out / "tokenizer.json").is_file()
    assert (out / "generation_config.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("path", PREDICT, ids=lambda p: str(p.relative_to(REPO / "examples")))
def test_predict_example_runs(path: Path, tmp_path):
    need_shared()
    adapter = quick_adapter(tmp_path)
    out = tmp_path / "predict"
    result = run_cli("train", str(path), "model_name_or_path=tuneforge/tiny", f"adapter_name_or_path={adapter}",
                     f"dataset_dir={LF_DATA}", f"output_dir={out}", "max_samples=2", "max_new_tokens=8",
                     *tiny_substitutes(path, tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len((out / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()) == 4  # 2 per dataset
    assert (out / "predict_results.json").is_file()


@pytest.mark.slow
def test_bench_yaml_runs_unchanged(tmp_path):
    """The GPU benchmark config, tiny model substituted, as measure.sh callers override it."""
    need_shared()
    out = tmp_path / "bench"
    result = run_cli("train", str(SHARED / "bench" / "sft_lora.yaml"), "model_name_or_path=tuneforge/tiny",
                     f"dataset_dir={LF_DATA}", f"output_dir={out}", "max_steps=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fp32" in result.stderr  # bf16: true falls back on a CPU, said in one line
    assert (out / "all_results.json").is_file()
