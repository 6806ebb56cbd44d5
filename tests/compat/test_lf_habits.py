"""A LLaMA-Factory user's habits work unchanged: `llamafactory-cli`-style flags, do_train false by default,
identity placeholders left as written with one warning."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO, run_cli, write_yaml
from tuneforge.cli.flags import rewrite, split_config
from tuneforge.cli.main import app

TINY = {"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink", "cutoff_len": 64}


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`tuneforge ARGS` through the console-script entry point, in this process."""
    from tuneforge.cli.main import run

    monkeypatch.setattr(sys, "argv", ["tuneforge", *args])
    try:
        run()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("words, expected", [
    (["train", "--stage", "sft", "--do_train", "True", "--dataset", "a,b", "--fp16"],
     ["train", "stage=sft", "do_train=True", "dataset=a,b", "fp16=true"]),
    (["train", "cfg.yaml", "--learning_rate", "1e-4", "--max_steps=-1", "--max_samples", "-1"],
     ["train", "cfg.yaml", "learning_rate=1e-4", "max_steps=-1", "max_samples=-1"]),
    (["--debug", "data", "check", "c.yaml", "--samples", "3", "--cutoff_len", "64", "--help"],
     ["--debug", "data", "check", "c.yaml", "--samples", "3", "cutoff_len=64", "--help"]),
    (["estimate", "c.yaml", "--gpu-mem-gib", "24", "--tokens", "9", "--lora_rank", "4"],
     ["estimate", "c.yaml", "--gpu-mem-gib", "24", "--tokens", "9", "lora_rank=4"]),
    (["webui", "--port", "7000"], ["webui", "--port", "7000"]),
    (["version"], ["version"]),
], ids=["flags-only", "config-then-flags", "data-check-options", "estimate-options", "webui", "version"])
def test_flags_become_overrides_and_command_options_stay(words, expected):
    assert rewrite(words, app) == expected


def test_the_config_is_found_among_flags(tmp_path):
    config = write_yaml(tmp_path / "c.yaml", **TINY)
    assert split_config("stage=sft", ["dataset=a"]) == (None, ["stage=sft", "dataset=a"])
    assert split_config("learning_rate=1", [str(config), "x=2"]) == (config, ["learning_rate=1", "x=2"])
    assert split_config(str(config), ["x=2"]) == (config, ["x=2"])


def test_llamaboard_preview_command_trains_with_flags_only(tmp_path):
    """LlamaBoard's "preview command" with llamafactory-cli replaced by tuneforge (the tiny model swapped in);
    the identity set without identity_name/identity_author trains as written, with one warning naming both; the
    qwen template (Qwen2.5's default system) differs from the tiny model's own: said once."""
    out = tmp_path / "saves" / "tiny" / "lora" / "train_1"
    result = run_cli("train", "--stage", "sft", "--do_train", "True", "--model_name_or_path", "tuneforge/tiny",
                     "--preprocessing_num_workers", "1", "--finetuning_type", "lora", "--template", "qwen",
                     "--flash_attn", "auto", "--dataset_dir", "data", "--dataset", "identity", "--cutoff_len", "64",
                     "--learning_rate", "5e-05", "--num_train_epochs", "3.0", "--max_samples", "8",
                     "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
                     "--lr_scheduler_type", "cosine", "--max_grad_norm", "1.0", "--logging_steps", "1",
                     "--save_steps", "100", "--warmup_steps", "0", "--packing", "False", "--report_to", "none",
                     "--output_dir", str(out), "--bf16", "True", "--plot_loss", "True", "--trust_remote_code", "True",
                     "--ddp_timeout", "180000000", "--include_num_input_tokens_seen", "True", "--optim", "adamw_torch",
                     "--lora_rank", "8", "--lora_alpha", "16", "--lora_dropout", "0", "--lora_target", "all",
                     "--max_steps", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    warned = [line for line in result.stderr.splitlines() if "placeholder" in line]
    assert len(warned) == 1, result.stderr[-3000:]
    assert result.stderr.count("renders differently from the tokenizer's own chat_template") == 1  # once per run
    assert "identity.json record 0" in warned[0] and "left as written" in warned[0]
    assert "set identity_name and identity_author" in warned[0]
    assert (out / "adapter_model.safetensors").is_file()
    trained = json.loads((out / "all_results.json").read_text())
    assert trained["epoch"] > 0


def test_do_train_defaults_to_false_so_a_predict_config_predicts(tmp_path, monkeypatch, capsys):
    """do_predict + eval_dataset and no do_train (LLaMA-Factory's predict examples): predicts, asks for no
    training dataset; a config that asks for nothing says so in one line."""
    out = tmp_path / "pred"
    config = write_yaml(tmp_path / "predict.yaml", **TINY, eval_dataset="identity", identity_name="锻",
                        identity_author="Lab", max_samples=2, do_predict=True, predict_with_generate=True,
                        max_new_tokens=4, output_dir=str(out))
    code, _, err = run_main(monkeypatch, capsys, "train", str(config))
    assert code == 0, err
    rows = (out / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2 and "锻" in json.loads(rows[0])["label"]
    assert "placeholder" not in err
    code, _, err = run_main(monkeypatch, capsys, "train", str(config), "--identity_author", "null")  # LLaMA-Factory's
    assert code == 0 and err.count("{{author}} placeholder, left as written") == 1, err  # way: said once
    nothing = write_yaml(tmp_path / "nothing.yaml", **TINY, dataset="identity")
    code, _, err = run_main(monkeypatch, capsys, "train", str(nothing))
    assert code == 2 and err.strip().splitlines() == [err.strip()]
    assert "do_train is false (the default, as in LLaMA-Factory)" in err and "set do_train: true" in err


def test_no_config_and_no_flags_is_one_line(monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "train")
    assert code == 2 and err.startswith("error: give a YAML config file") and len(err.strip().splitlines()) == 1


def test_command_options_keep_working_beside_flags(monkeypatch, capsys):
    """data check's --samples and estimate's --gpu-mem-gib stay options; config keys as flags beside them."""
    config = REPO / "examples" / "demo" / "identity_lora.yaml"
    code, out, err = run_main(monkeypatch, capsys, "data", "check", str(config), "--samples", "1", "--cutoff_len", "32")
    assert code == 0, err
    assert "--- sample 0" in out and "--- sample 1" not in out and "exceed cutoff_len 32" in out
    code, out, err = run_main(monkeypatch, capsys, "estimate", str(config), "--gpu-mem-gib", "7", "--lora_rank=4")
    assert code == 0, err
    assert "7.0 GiB" in out


def test_data_check_flags_unfilled_placeholders(tmp_path, monkeypatch, capsys):
    config = write_yaml(tmp_path / "c.yaml", **TINY, dataset="identity", identity_name="小锻")
    code, out, err = run_main(monkeypatch, capsys, "data", "check", str(config), "--samples", "0")
    assert code == 0, err
    warned = [line for line in out.splitlines() if "placeholder" in line]
    assert len(warned) == 1 and "{{author}}" in warned[0] and "set identity_author" in warned[0]


def test_fsdp_in_one_process_is_no_traceback(tmp_path):
    """`fsdp: full_shard` pasted into a run that is one process (one device or the CPU): transformers refuses FSDP
    outside a process group; the run is started as a world of one, so it trains (on a CPU as plain data parallel)."""
    out = tmp_path / "out"
    result = run_cli("train", "--model_name_or_path", "tuneforge/tiny", "--do_train", "--dataset", "identity",
                     "--identity_name", "锻", "--identity_author", "Lab", "--template", "qwen3_nothink",
                     "--cutoff_len", "64", "--max_steps", "1", "--output_dir", str(out), "--fsdp", "full_shard",
                     cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (out / "adapter_model.safetensors").is_file()


def test_a_streamed_dataset_with_placeholders_says_so_once(tmp_path, caplog):
    import logging

    from e2e.helpers import train

    with caplog.at_level(logging.INFO, logger="tuneforge"):
        train(tmp_path, streaming=True, max_steps=2, identity_name=None, identity_author=None, cutoff_len=64,
              plot_loss=False)
    warned = [r.message for r in caplog.records if "placeholder" in r.message]
    assert len(warned) == 1 and "left as written" in warned[0], caplog.text[-3000:]


def test_data_check_of_a_predict_config_checks_its_eval_datasets(tmp_path, monkeypatch, capsys):
    config = write_yaml(tmp_path / "predict.yaml", **TINY, eval_dataset="identity", identity_name="锻",
                        identity_author="Lab", do_predict=True, predict_with_generate=True, output_dir="unused")
    code, out, err = run_main(monkeypatch, capsys, "data", "check", str(config), "--samples", "0")
    assert code == 0, err
    assert "dataset identity: 80 examples" in out
    code, _, err = run_main(monkeypatch, capsys, "data", "check", str(config), "--eval_dataset", "null")
    assert code == 2 and err.strip() == f"error: {config}: nothing to check: set dataset (or eval_dataset)"
