"""Glue between our stage context and trl's trainers, shared by the trl-based stages (rm, dpo, kto, grpo, rloo)."""

from __future__ import annotations

import dataclasses
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.model.load import Precision


def trl_config(config_class: Any, args: Any, **stage_fields: Any) -> Any:
    """`config_class` (a trl TrainingArguments subclass) with every init field of our validated `args`
    copied as is, so output_dir, logging, saving, precision and report_to stay exactly as the user set
    them (trl's own defaults, e.g. gradient checkpointing on and bf16 on, never leak in), plus the
    stage's own fields."""
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init and hasattr(args, f.name)}
    fields.update(stage_fields)
    return config_class(**fields)


def use_disabled_adapter_as_reference(model: Any) -> None:
    """trl's trainers copy a PEFT model's adapter into a second adapter named "ref" and use it as the
    reference. We want the reference to be the base model with the adapter disabled (what
    LLaMA-Factory does; no second set of weights, and no `ref/` folder written next to the saved
    adapter), so the copy is dropped: trl then falls back to `disable_adapter()` by itself."""
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and "ref" in peft_config:
        model.delete_adapter("ref")


def reference_model(cfg: RunConfig, precision: Precision, attention: str | None) -> Any | None:
    """The frozen reference policy: `ref_model` (+ `ref_model_adapters`) when given; None for LoRA (the
    adapter is disabled instead); otherwise a second copy of the starting model, as trl would load it,
    but through our loader (revision, cache_dir, attention, trust_remote_code) in inference precision."""
    from tuneforge.model.adapters import load_adapters
    from tuneforge.model.load import load_model
    from tuneforge.model.reward import inference_dtype

    pref = cfg.pref
    if pref.ref_model is None and cfg.method.finetuning_type == "lora":
        return None
    model_cfg = cfg.model
    if pref.ref_model is not None:  # another model: the policy's loading settings, its own name
        model_cfg = model_cfg.model_copy(update={"model_name_or_path": pref.ref_model, "adapter_name_or_path": None})
    model = load_model(model_cfg, dataclasses.replace(precision, load_dtype=inference_dtype(precision)),
                       attn_implementation=attention, for_training=False)
    if pref.ref_model is not None and pref.ref_model_adapters:
        model = load_adapters(model, pref.ref_model_adapters, trainable_last=False).merge_and_unload()
    model.requires_grad_(False)
    return model.eval()
