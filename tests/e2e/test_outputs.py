"""Output layout (LLaMA-Factory-compatible), checkpoints, eval plots, adapters, pre-training."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import REPO, run_cli
from e2e.helpers import final_loss, log_lines, train


@pytest.mark.slow
def test_layout_checkpoints_and_eval(tmp_path):
    out = train(tmp_path, finetuning_type="lora", learning_rate=5e-3, max_steps=12, logging_steps=2,
                save_strategy="steps", save_steps=4, save_total_limit=2, val_size=0.1, eval_strategy="steps",
                eval_steps=6, per_device_eval_batch_size=4)
    names = {p.name for p in out.iterdir()}
    assert {"checkpoint-8", "checkpoint-12"} <= names and "checkpoint-4" not in names  # save_total_limit
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "training_args.yaml",
                 "trainer_log.jsonl", "all_results.json", "train_results.json", "eval_results.json",
                 "trainer_state.json", "training_loss.png", "training_eval_loss.png"):
        assert name in names, name
    assert {"trainer_state.json", "adapter_model.safetensors"} <= {p.name for p in (out / "checkpoint-8").iterdir()}
    record = [r for r in log_lines(out) if "loss" in r][-1]
    assert {"current_steps", "total_steps", "loss", "lr", "epoch", "percentage", "elapsed_time",
            "remaining_time"} <= set(record)
    results = json.loads((out / "all_results.json").read_text())
    assert {"train_loss", "train_runtime", "eval_loss", "train_tokens_per_second"} <= set(results)
    resolved = yaml.safe_load((out / "training_args.yaml").read_text())
    assert resolved["lora_alpha"] == 16 and resolved["template"] == "qwen3_nothink"


@pytest.mark.slow
def test_continue_an_adapter_and_dora_rslora(tmp_path):
    first = train(tmp_path / "a", finetuning_type="lora", learning_rate=5e-3, num_train_epochs=6)
    more = train(tmp_path / "b", finetuning_type="lora", adapter_name_or_path=str(first), learning_rate=1e-3,
                 max_steps=5, logging_steps=1)
    assert log_lines(more)[0]["loss"] < 3.0  # starts where the first adapter left off, not at ~10
    dora = train(tmp_path / "c", finetuning_type="lora", use_dora=True, use_rslora=True, lora_target="q_proj,v_proj",
                 max_steps=2)
    config = json.loads((dora / "adapter_config.json").read_text())
    assert config["use_dora"] and config["use_rslora"] and set(config["target_modules"]) == {"q_proj", "v_proj"}


@pytest.mark.slow
def test_pretraining_loss_falls(tmp_path):
    out = train(tmp_path, stage="pt", dataset="alpaca_demo", finetuning_type="full", cutoff_len=64,
                learning_rate=5e-3, num_train_epochs=6, logging_steps=5)
    losses = [r["loss"] for r in log_lines(out) if "loss" in r]
    assert losses[-1] < losses[0] - 2


@pytest.mark.slow
def test_demo_flow_through_the_cli(tmp_path):
    """What `make demo` runs: train the identity with LoRA, then ask in English and Chinese."""
    out = tmp_path / "identity"
    trained = run_cli("train", str(REPO / "examples" / "demo" / "identity_lora.yaml"), f"output_dir={out}",
                      cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "loss 10." in trained.stderr and (out / "training_loss.png").is_file()
    assert final_loss(out) < 0.3
    chat = run_cli("chat", str(REPO / "examples" / "demo" / "identity_chat.yaml"), f"adapter_name_or_path={out}",
                   cwd=tmp_path, stdin="Who are you?\n你是谁\n")
    assert chat.returncode == 0, chat.stderr[-3000:]
    replies = [line for line in chat.stdout.splitlines() if line.startswith("Assistant:")]
    assert len(replies) == 2 and all("Forge" in r for r in replies), chat.stdout


@pytest.mark.slow
def test_chinese_paths_data_and_names(tmp_path):
    data_dir = tmp_path / "数据"
    data_dir.mkdir()
    rows = [{"instruction": "你是谁？", "input": "", "output": "我是{{name}}，由{{author}}开发。"}] * 8
    (data_dir / "身份.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (data_dir / "dataset_info.json").write_text(json.dumps({"身份": {"file_name": "身份.json"}}, ensure_ascii=False),
                                                encoding="utf-8")
    out = train(tmp_path, dataset="身份", dataset_dir=str(data_dir), identity_name="小锻", identity_author="锻造实验室",
                output_dir=tmp_path / "输出" / "模型", max_steps=2, logging_steps=1)
    assert (out / "adapter_model.safetensors").is_file() and (out / "training_loss.png").is_file()
    resolved = yaml.safe_load((out / "training_args.yaml").read_text(encoding="utf-8"))
    assert resolved["identity_name"] == "小锻" and resolved["dataset"] == ["身份"]


def test_the_trained_model_is_freed_before_predictions_start(tmp_path, monkeypatch):
    """do_predict after training (vLLM sizes its KV cache on the free GPU memory): the trained model
    and everything the trainer held are gone by the time predict starts."""
    import weakref

    import tuneforge.evaluate.predict as predict
    from tuneforge.cli import train as train_cli

    refs = []
    real_build = train_cli.build

    def build(run):
        run, model = real_build(run)
        refs.append(weakref.ref(model))
        return run, model

    alive_at_predict = []
    monkeypatch.setattr(train_cli, "build", build)
    monkeypatch.setattr(predict, "maybe_predict", lambda cfg: alive_at_predict.append(refs[0]() is not None))
    train(tmp_path, max_steps=2, logging_steps=1)
    assert alive_at_predict == [False]
