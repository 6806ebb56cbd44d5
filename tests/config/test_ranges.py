"""Values out of range are one ConfigError line naming the key, at load time (before anything loads),
including keys that are renamed on the way in (warmup_ratio)."""

from __future__ import annotations

import pytest

from tuneforge.config.errors import ConfigError
from tuneforge.config.load import load

BASE = {"model_name_or_path": "tuneforge/tiny", "dataset": "identity", "output_dir": "out"}

BAD = [
    ("warmup_ratio", 1.5, "warmup_ratio"),
    ("warmup_ratio", -0.1, "warmup_ratio"),
    ("warmup_ratio", "lots", "warmup_ratio"),
    ("warmup_steps", 1.5, "warmup_steps"),
    ("warmup_steps", -1, "warmup_steps"),
    ("logging_steps", 0, "logging_steps"),
    ("logging_steps", 2.5, "logging_steps"),
    ("save_steps", 0, "save_steps"),
    ("eval_steps", -5, "eval_steps"),
    ("save_total_limit", -1, "save_total_limit"),
    ("max_steps", -2, "max_steps"),
    ("weight_decay", -0.01, "weight_decay"),
    ("max_grad_norm", -1, "max_grad_norm"),
    ("learning_rate", 0, "learning_rate"),
    ("num_train_epochs", 0, "num_train_epochs"),
    ("lora_alpha", 0, "lora_alpha"),
    ("lora_rank", 0, "lora_rank"),
    ("lora_dropout", 1.0, "lora_dropout"),
    ("cutoff_len", 0, "cutoff_len"),
    ("val_size", 1.5, "val_size"),
    ("model_max_length", 0, "model_max_length"),
    ("ppo_target", 0, "ppo_target"),
    ("top_p", 0, "top_p"),
    ("temperature", -1, "temperature"),
    ("dpo_label_smoothing", 0.6, "dpo_label_smoothing"),
    ("mix_strategy", "interleave_sometimes", "mix_strategy"),
]


@pytest.mark.parametrize("key,value,named", BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_out_of_range_value_is_one_config_error(key, value, named):
    with pytest.raises(ConfigError) as info:
        load(base={**BASE, key: value})
    message = str(info.value)
    assert f"'{named}'" in message and "\n" not in message


def test_warmup_ratio_in_range_becomes_a_fractional_warmup_steps():
    cfg, _ = load(base={**BASE, "warmup_ratio": 0.1})
    assert cfg.train.warmup_steps == 0.1
    with pytest.raises(ConfigError, match="either warmup_ratio or warmup_steps"):
        load(base={**BASE, "warmup_ratio": 0.1, "warmup_steps": 5})


def test_warmup_ratio_through_the_cli_is_one_line_and_exit_2(tmp_path):
    from conftest import assert_one_error_line, run_cli, write_yaml

    config = write_yaml(tmp_path / "train.yaml", **BASE, warmup_ratio=1.5)
    result = run_cli("train", str(config), cwd=tmp_path)
    assert_one_error_line(result, "'warmup_ratio'")
    assert not (tmp_path / "out").exists()
