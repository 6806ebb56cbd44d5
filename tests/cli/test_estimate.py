"""`tuneforge estimate CONFIG`: the table a user reads before spending GPU time, through the real CLI.

Each case is a `python -m tuneforge` process (a few seconds of imports), so the three run at once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SHARED, assert_one_error_line, run_cli, write_yaml

TINY = {"model_name_or_path": "tuneforge/tiny", "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_target": "all", "dataset": "identity", "template": "qwen3_nothink", "cutoff_len": 1024,
        "per_device_train_batch_size": 4, "output_dir": "saves/tiny", "bf16": True}
# Qwen2.5-1.5B's shape (shared/bench/make_model.py), as a config.json alone: no weights needed
QWEN15 = {"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
          "num_attention_heads": 12, "num_key_value_heads": 2, "tie_word_embeddings": True}


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_path):
    from transformers import Qwen2Config

    tmp = tmp_path_factory.mktemp("estimate")
    model_dir = tmp / "qwen2.5-1.5b-shape"
    Qwen2Config(**QWEN15).save_pretrained(model_dir)
    bench = SHARED / "bench" / "sft_lora.yaml"
    bench_args = [str(bench), f"model_name_or_path={model_dir}"] if bench.is_file() else [
        str(write_yaml(tmp / "bench.yaml", **{**TINY, "model_name_or_path": str(model_dir),
                                               "cutoff_len": 2048, "per_device_train_batch_size": 8})),
    ]
    cases = {
        "tiny": ["estimate", str(write_yaml(tmp / "tiny.yaml", **TINY))],
        "bench small card": ["estimate", *bench_args, "--gpu-mem-gib", "24"],
        "bad target": ["estimate", str(write_yaml(tmp / "bad.yaml", **TINY)), "lora_target=q_proj,qkv"],
    }
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {name: pool.submit(run_cli, *args, cwd=tmp) for name, args in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def test_prints_the_table_and_the_decision(results, tiny_path):
    from transformers import AutoModelForCausalLM

    from tuneforge.config.schema import MethodConfig, ModelConfig
    from tuneforge.model.adapters import apply_method, count_parameters

    result = results["tiny"]
    assert result.returncode == 0, result.stderr
    out = result.stdout
    model = apply_method(AutoModelForCausalLM.from_pretrained(tiny_path), MethodConfig(), ModelConfig(
        model_name_or_path="tuneforge/tiny"))
    trainable, total = count_parameters(model)
    assert f"{trainable:,}" in out and f"{total:,}" in out  # what training will report
    for row in ("params", "trainable params", "weights", "grads", "optimizer states", "activations",
                "loss buffer", "working memory", "overhead", "predicted peak"):
        assert row in out, row
    assert "4,096 tokens per micro-batch" in out
    assert "card memory: 80.0 GiB (no GPU visible" in out
    assert "gradient checkpointing: off (predicted" in out
    assert not (tiny_path.parent / "saves").exists()


def test_checkpointing_turns_on_when_the_card_is_too_small(results):
    result = results["bench small card"]
    assert result.returncode == 0, result.stderr
    assert "16,384 tokens per micro-batch" in result.stdout
    assert "card memory: 24.0 GiB (--gpu-mem-gib)" in result.stdout
    assert "gradient checkpointing: on (predicted" in result.stdout and "GiB with it)" in result.stdout
    assert "1,552,946,688" in result.stdout and "9,232,384" in result.stdout  # Qwen2.5-1.5B, LoRA r8 all


def test_a_bad_config_is_one_line_and_exit_2(results):
    line = assert_one_error_line(results["bad target"])
    assert line.startswith("error: lora_target qkv matches no linear layer"), line
