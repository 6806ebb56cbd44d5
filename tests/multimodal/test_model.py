"""What trains in a vision-language model: freeze_vision_tower / freeze_multi_modal_projector /
freeze_language_model for full fine-tuning and LoRA; vision families we do not train refused in one line; batches
padding-free unless asked."""

from __future__ import annotations

import pytest
from conftest import assert_one_error_line, run_cli, write_yaml

from tuneforge.config.errors import ConfigError
from tuneforge.config.load import load


def built(**keys):
    from tuneforge.model.adapters import apply_method
    from tuneforge.model.load import Precision, load_model

    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny-qwen2-vl", "output_dir": "unused", **keys})
    import torch

    model = load_model(cfg.model, Precision(torch.float32, False, False, "cpu"), attn_implementation="sdpa")
    return apply_method(model, cfg.method, cfg.model)


def trained_parts(model) -> dict[str, bool]:
    """part -> whether any of its parameters trains."""
    from tuneforge.model.vision import FAMILIES, part_of

    out = {"tower": False, "projector": False, "language": False}
    for name, param in model.named_parameters():
        out[part_of(name, FAMILIES["qwen2_vl"])] |= param.requires_grad
    return out


@pytest.mark.parametrize("keys, expected", [
    ({}, {"tower": False, "projector": False, "language": True}),
    ({"finetuning_type": "freeze"}, {"tower": False, "projector": False, "language": True}),
    ({"freeze_vision_tower": False}, {"tower": True, "projector": False, "language": True}),
    ({"freeze_multi_modal_projector": False, "freeze_language_model": True},
     {"tower": False, "projector": True, "language": False}),
])
def test_full_fine_tuning_trains_only_the_unfrozen_parts(keys, expected):
    assert trained_parts(built(**{"finetuning_type": "full", **keys})) == expected


def test_lora_never_wraps_the_vision_tower_unless_asked():
    plain = built(finetuning_type="lora")
    wrapped = [name for name, _ in plain.named_modules() if name.endswith("lora_A")]
    assert wrapped and not any(".visual." in name for name in wrapped)
    assert trained_parts(plain) == {"tower": False, "projector": False, "language": True}
    tower = built(finetuning_type="lora", freeze_vision_tower=False)
    assert any(".visual.blocks." in name for name, _ in tower.named_modules() if name.endswith("lora_A"))
    projector = built(finetuning_type="lora", freeze_multi_modal_projector=False)
    assert trained_parts(projector)["projector"]  # trained whole, saved with the adapter (modules_to_save)


def test_freezing_everything_is_refused():
    with pytest.raises(ConfigError, match="nothing would train"):
        built(finetuning_type="full", freeze_language_model=True)


@pytest.mark.parametrize("keys, batching", [({}, "padding-free"), ({"packing": True}, "packed rows"),
                                            ({"neat_packing": True}, "packed rows"), ({"padding_free": False}, "padded")])
def test_vision_batches_are_padding_free_unless_asked(keys, batching):
    """As for text models (tests/multimodal/test_vision_rows.py proves the rows equal padded batches)."""
    from tuneforge.model.kernels import plan
    from tuneforge.model.load import load_model_config

    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny-qwen2-vl", "output_dir": "unused", **keys})
    fast = plan(cfg, "cpu", load_model_config(cfg.model))
    assert fast.describe().startswith(f"batches {batching}") and not fast.notes


def test_a_vision_family_we_do_not_train_is_one_line(tmp_path, tiny_tokenizer):
    from transformers import LlavaNextConfig

    folder = tmp_path / "llava_next"
    LlavaNextConfig().save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    config = write_yaml(tmp_path / "c.yaml", model_name_or_path=str(folder), dataset="identity", template="qwen")
    assert_one_error_line(run_cli("data", "check", str(config)), "model type llava_next", "does not train yet",
                          "supported: qwen2_vl, qwen2_5_vl, qwen3_vl, llava")


def test_llava_lora_stays_off_its_clip_tower():
    """CLIP's attention has q_proj/k_proj/v_proj like the language model: the names alone would wrap it."""
    model = built(model_name_or_path="tuneforge/tiny-llava", finetuning_type="lora")
    wrapped = [name for name, _ in model.named_modules() if name.endswith("lora_A")]
    assert any("language_model" in name and "q_proj" in name for name in wrapped)
    assert not any("vision_tower" in name or "multi_modal_projector" in name for name in wrapped)
    tower = built(model_name_or_path="tuneforge/tiny-llava", finetuning_type="lora", freeze_vision_tower=False)
    assert any("vision_tower" in name for name, _ in tower.named_modules() if name.endswith("lora_A"))


def test_llamafactory_vision_example_keys_load():
    """The keys of LLaMA-Factory's Qwen2.5-VL LoRA example: image and video limits and freezing act (no note)."""
    cfg, notes = load(base={"model_name_or_path": "tuneforge/tiny-qwen2-vl", "output_dir": "unused",
                            "image_max_pixels": 262144, "video_max_pixels": 16384, "freeze_vision_tower": True,
                            "freeze_multi_modal_projector": True, "freeze_language_model": False})
    assert cfg.data.image_max_pixels == 262144 and cfg.model.freeze_vision_tower
    assert cfg.data.video_max_pixels == 16384 and not any("video_max_pixels" in note for note in notes)
