"""The form is generated from the config schema: each field's widget, default, choices and help come
from config/schema.py; form values go back to the same config keys; a new key shows up by itself."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

from tuneforge.config import schema
from tuneforge.webui import form, layout


def test_every_schema_key_becomes_a_field_with_its_type_default_choices_and_help():
    specs = form.schema_fields()
    keys = {k for cls in schema.SECTIONS.values() for k in cls.model_fields if k != "extra"}
    assert set(specs) == keys
    assert specs["stage"].kind == "choice" and specs["stage"].choices == ("sft", "pt", "rm", "dpo", "kto", "ppo",
                                                                          "grpo", "rloo")
    assert specs["stage"].default == "sft"
    assert specs["learning_rate"].kind == "float" and specs["learning_rate"].default == 5e-5
    assert specs["cutoff_len"].kind == "int" and specs["cutoff_len"].default == 2048
    assert specs["packing"].kind == "bool" and specs["packing"].default is False
    assert specs["enable_liger_kernel"].kind == "tristate" and specs["enable_liger_kernel"].choices == ("auto", "true",
                                                                                                      "false")
    assert specs["lora_target"].kind == "list" and specs["lora_target"].default == ["all"]
    method = specs["export_quantization_method"]  # Literal[...] | None: the choices and "" for unset
    assert method.kind == "choice" and method.choices == ("", "bnb", "gptq", "autoround") and method.default is None
    assert form.config_value(method, "") is None and form.config_value(method, "gptq") == "gptq"
    assert specs["model_name_or_path"].required
    assert specs["cutoff_len"].help == schema.DataConfig.model_fields["cutoff_len"].description
    assert all(spec.help for spec in specs.values()), [k for k, s in specs.items() if not s.help]


@pytest.mark.parametrize("key,typed,value", [
    ("learning_rate", 1e-4, 1e-4), ("cutoff_len", 512.0, 512), ("cutoff_len", 10.5, 10.5),
    ("max_samples", "", None), ("max_samples", "100", 100), ("max_samples", "abc", "abc"), ("lora_alpha", "1e-1", 0.1),
    ("enable_liger_kernel", "auto", None), ("enable_liger_kernel", "false", False), ("packing", True, True),
    ("lora_target", "q_proj, v_proj", ["q_proj", "v_proj"]), ("dataset", ["identity", "数据"], ["identity", "数据"]),
    ("report_to", "none", "none"), ("report_to", "tensorboard,wandb", ["tensorboard", "wandb"]),
    ("resume_from_checkpoint", "true", True), ("template", "", None), ("default_system", "你是助手", "你是助手"),
])
def test_a_typed_value_becomes_the_config_value(key, typed, value):
    """Numbers keep what was typed (a fraction in a whole-number field reaches the config's own check)."""
    assert form.config_value(form.schema_fields()[key], typed) == value


@pytest.mark.parametrize("key", ["lora_target", "enable_liger_kernel", "max_samples", "stage", "learning_rate",
                                 "dataset", "template", "packing"])
def test_defaults_shown_in_the_form_read_back_as_the_defaults(key):
    spec = form.schema_fields()[key]
    assert form.config_value(spec, form.widget_value(spec, spec.default)) in (spec.default, None)


def test_only_changed_keys_and_the_named_ones_reach_the_yaml():
    specs = form.schema_fields()
    raw = {key: form.widget_value(specs[key], specs[key].default) for key in ("stage", "learning_rate", "cutoff_len",
                                                                             "model_name_or_path", "lora_target")}
    raw.update(model_name_or_path="tuneforge/tiny", learning_rate=1e-3)
    flat = form.changed_keys(specs, raw, always=("model_name_or_path", "stage"))
    assert flat == {"model_name_or_path": "tuneforge/tiny", "stage": "sft", "learning_rate": 1e-3}


def test_the_layout_places_only_real_keys_and_hides_few(monkeypatch):
    fields = layout.all_fields()
    placed = layout.placed()
    assert placed <= set(fields), placed - set(fields)
    assert set(layout.HIDDEN) <= set(form.schema_fields())
    shown = layout.visible_keys() & set(form.schema_fields())
    assert shown | set(layout.HIDDEN) == set(form.schema_fields())
    assert len(layout.HIDDEN) <= 3


def test_a_key_added_to_the_schema_appears_in_the_form_without_touching_the_ui(monkeypatch):
    class Extended(schema.DataConfig):
        shuffle_buffer: Literal["small", "large"] = Field("small", description="a key added later")

    monkeypatch.setitem(schema.SECTIONS, "data", Extended)
    spec = form.schema_fields()["shuffle_buffer"]
    assert (spec.kind, spec.choices, spec.default, spec.help) == ("choice", ("small", "large"), "small",
                                                                 "a key added later")
    assert "shuffle_buffer" in layout.other_keys() and "shuffle_buffer" in layout.tab_keys("train")
