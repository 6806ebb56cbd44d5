"""Config loading: LLaMA-Factory key names and value spellings, mapped onto transformers 5.x."""

from __future__ import annotations

import pytest

from conftest import SHARED, need_shared, write_yaml
from tuneforge.config.errors import ConfigError
from tuneforge.config.load import load, parse_overrides

BASE = {"model_name_or_path": "tuneforge/tiny", "dataset": "identity", "output_dir": "out"}


def cfg_of(**keys):
    return load(base={**BASE, **keys})[0]


def test_lf_value_spellings():
    cfg = cfg_of(dataset="identity, alpaca_demo ,sharegpt_demo", lora_target="q_proj,v_proj",
                 learning_rate="2.0e-5", num_train_epochs="3", additional_target="embed_tokens, lm_head")
    assert cfg.data.dataset == ["identity", "alpaca_demo", "sharegpt_demo"]
    assert cfg.method.lora_target == ["q_proj", "v_proj"]
    assert cfg.train.learning_rate == pytest.approx(2e-5)
    assert cfg.train.num_train_epochs == 3.0
    assert cfg.method.additional_target == ["embed_tokens", "lm_head"]
    assert cfg_of(lora_target="all").method.lora_target == ["all"]


def test_lora_alpha_defaults_to_twice_rank():
    assert cfg_of(lora_rank=16).method.lora_alpha == 32
    assert cfg_of(lora_rank=16, lora_alpha=8).method.lora_alpha == 8


def test_removed_transformers_keys_are_mapped():
    cfg, notes = load(base={**BASE, "warmup_ratio": 0.1, "no_cuda": True, "logging_dir": "logs",
                            "save_safetensors": True, "evaluation_strategy": "no"})
    assert cfg.train.warmup_steps == pytest.approx(0.1)  # a float < 1 is a ratio in transformers 5
    assert cfg.train.use_cpu is True
    assert any("logging_dir" in n for n in notes)
    with pytest.raises(ConfigError, match="either warmup_ratio or warmup_steps"):
        cfg_of(warmup_ratio=0.1, warmup_steps=10)


def test_other_training_arguments_pass_through_with_types():
    cfg = cfg_of(adam_epsilon="1e-8", optim="adamw_torch", dataloader_num_workers=2, group_by_length=True)
    assert cfg.train.extra["adam_epsilon"] == pytest.approx(1e-8)
    assert cfg.train.extra["optim"] == "adamw_torch"
    assert cfg.train.extra["train_sampling_strategy"] == "group_by_length"


def test_misspelt_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="unknown key 'lora_rnak'; did you mean 'lora_rank'"):
        cfg_of(lora_rnak=8)
    with pytest.raises(ConfigError, match="did you mean 'per_device_train_batch_size'"):
        cfg_of(per_device_train_batchsize=8)


def test_known_but_unsupported_lf_keys_say_so():
    with pytest.raises(ConfigError, match="'shift_attn' is a LLaMA-Factory key tuneforge does not support yet"):
        cfg_of(shift_attn=True)
    with pytest.raises(ConfigError, match="there is no stage 'orpo'; use stage: dpo with pref_loss: orpo"):
        cfg_of(stage="orpo")
    with pytest.raises(ConfigError, match="'stage': must be 'sft', 'pt', 'rm', 'dpo'"):
        cfg_of(stage="sft2")
    cfg_of(packing=False, shift_attn=False)  # switched off: accepted


def test_invalid_values_name_the_key():
    with pytest.raises(ConfigError, match="'lora_rank'.*greater than 0"):
        cfg_of(lora_rank=0)
    with pytest.raises(ConfigError, match="'finetuning_type'"):
        cfg_of(finetuning_type="qlora")
    with pytest.raises(ConfigError, match="'model_name_or_path' is required"):
        load(base={"dataset": "identity", "output_dir": "x"})
    with pytest.raises(ConfigError, match="bf16 and fp16"):
        cfg_of(bf16=True, fp16=True)


def test_overrides_parse_yaml_values():
    assert parse_overrides(["lr_scheduler_type=cosine", "max_steps=10", "bf16=false", "dataset=a,b"]) == {
        "lr_scheduler_type": "cosine", "max_steps": 10, "bf16": False, "dataset": "a,b"}
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["oops"])


def test_yaml_file_and_overrides(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", **BASE, learning_rate=1e-4, identity_name="小助手")
    cfg, _ = load(path, ["learning_rate=3e-4", "output_dir=其他目录"])
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.train.output_dir == "其他目录"
    assert cfg.data.identity_name == "小助手"
    assert cfg.source == str(path)


def test_resume_spellings():
    assert cfg_of(resume_from_checkpoint="true").train.resume_from_checkpoint is True
    assert cfg_of(resume_from_checkpoint=False).train.resume_from_checkpoint is None
    assert cfg_of(resume_from_checkpoint="out/checkpoint-5").train.resume_from_checkpoint == "out/checkpoint-5"


def test_bench_yaml_loads_unchanged():
    need_shared()
    cfg, _ = load(SHARED / "bench" / "sft_lora.yaml", ["model_name_or_path=tuneforge/tiny", "output_dir=o"])
    assert cfg.method.lora_target == ["all"] and cfg.train.bf16 and cfg.train.warmup_steps == pytest.approx(0.1)
    assert cfg.train.save_strategy == "no" and cfg.train.overwrite_output_dir


def test_precision_falls_back_to_fp32_on_cpu():
    import torch

    from tuneforge.model.load import choose_precision

    if torch.cuda.is_available():
        pytest.skip("CPU-only behaviour")
    precision = choose_precision(cfg_of(bf16=True).train, 'lora')
    assert (precision.bf16, precision.fp16, precision.load_dtype) == (False, False, torch.float32)
    assert "fp32" in precision.note
