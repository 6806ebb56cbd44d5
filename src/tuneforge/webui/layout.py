"""Where each config key goes in the page: one table. Keys the table does not place land in the
Train tab's "other keys" group by themselves, so a key added to the schema shows up without a
change here; `HIDDEN` lists the few left out on purpose, each with the reason."""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.webui.form import FieldSpec, schema_fields


@dataclass(frozen=True)
class Group:
    name: str  # i18n key (ui.group_<name>)
    keys: tuple[str, ...]
    collapsed: bool = False


GENERATION = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "num_beams", "length_penalty",
              "repetition_penalty", "skip_special_tokens")
VLLM = ("vllm_maxlen", "vllm_gpu_util", "vllm_enforce_eager", "vllm_max_lora_rank")

TOP = ("model_name_or_path", "finetuning_type", "adapter_name_or_path", "quantization_bit", "quantization_method",
       "template", "flash_attn", "rope_scaling", "enable_liger_kernel")
TABS: dict[str, tuple[Group, ...]] = {
    "train": (
        Group("basic", ("stage", "dataset_dir", "dataset", "identity_name", "identity_author", "learning_rate",
                        "num_train_epochs", "max_steps", "max_grad_norm", "max_samples", "bf16", "fp16", "pure_bf16",
                        "cutoff_len", "per_device_train_batch_size", "gradient_accumulation_steps", "val_size",
                        "lr_scheduler_type")),
        Group("steps", ("logging_steps", "save_steps", "warmup_steps", "neftune_noise_alpha", "packing",
                        "use_llama_pro", "output_dir")),
        Group("freeze", ("freeze_trainable_layers", "freeze_trainable_modules", "freeze_extra_modules"), True),
        Group("lora", ("lora_rank", "lora_alpha", "lora_dropout", "loraplus_lr_ratio", "loraplus_lr_embedding",
                       "lora_target", "additional_target", "use_rslora", "use_dora", "pissa_init", "pissa_iter",
                       "pissa_convert", "create_new_adapter"), True),
        Group("galore", ("use_galore", "galore_layerwise", "galore_rank", "galore_update_interval", "galore_scale",
                         "galore_target", "galore_proj_type"), True),
        Group("apollo", ("use_apollo", "apollo_layerwise", "apollo_rank", "apollo_update_interval", "apollo_scale",
                         "apollo_target", "apollo_proj", "apollo_proj_type", "apollo_scale_type", "apollo_scale_front"),
              True),
        Group("badam", ("use_badam", "badam_mode", "badam_switch_mode", "badam_switch_interval", "badam_update_ratio",
                        "badam_start_block", "badam_mask_mode", "badam_verbose"), True),
        Group("rlhf", ("pref_beta", "pref_ftx", "pref_loss", "dpo_label_smoothing", "kto_chosen_weight",
                       "kto_rejected_weight", "simpo_gamma", "ref_model", "ref_model_adapters", "reward_model",
                       "reward_model_adapters", "reward_model_type", "ppo_buffer_size", "ppo_epochs",
                       "ppo_score_norm", "ppo_target", "ppo_whiten_rewards", "num_generations", "reward_funcs"),
              True),
    ),
    "evaluate": (
        Group("predict", ("dataset_dir", "eval_dataset", "cutoff_len", "max_samples", "per_device_eval_batch_size",
                          "output_dir")),
        Group("generation", GENERATION, True),
        Group("benchmark", ("task", "task_dir", "n_shot", "lang", "save_dir", "batch_size")),
    ),
    "chat": (
        Group("chat", ("infer_backend", "infer_dtype", "default_system")),
        Group("generation", GENERATION),
        Group("vllm", VLLM, True),
    ),
    "export": (Group("export", ("export_dir", "export_format", "export_gguf", "export_size", "export_dtype",
                                "export_device", "export_legacy_format", "export_hub_model_id")),
               Group("export_quantization", ("export_quantization_bit", "export_quantization_method",
                                             "export_quantization_dataset", "export_quantization_nsamples",
                                             "export_quantization_maxlen"), True)),
}
OTHER = "other"  # the Train tab's collapsed group of every key placed nowhere else

# Left out of the form on purpose (the page decides them), with the reason.
HIDDEN = {
    "do_train": "Start in the Train tab trains; the Evaluate tab predicts without training",
    "do_predict": "the Evaluate tab's Predict button is the prediction run",
    "predict_with_generate": "implied by the Evaluate tab's Predict button",
}

# TrainingArguments keys the config accepts into `extra` that the form shows as fields of their own
# (the rest go through the "other TrainingArguments keys" YAML box).
TRAINING_ARGS = {
    "neftune_noise_alpha": FieldSpec("neftune_noise_alpha", "train", "float", None,
                                     "NEFTune: noise added to the embeddings while training (e.g. 5; empty: off)"),
}

# Known model families: choosing one fills the template (any local folder or hub id can be typed).
MODELS = {
    "tuneforge/tiny": "qwen3_nothink",
    "Qwen/Qwen3-0.6B": "qwen3", "Qwen/Qwen3-1.7B": "qwen3", "Qwen/Qwen3-4B": "qwen3", "Qwen/Qwen3-8B": "qwen3",
    "Qwen/Qwen3-4B-Instruct-2507": "qwen3_nothink", "Qwen/Qwen3-30B-A3B-Instruct-2507": "qwen3_nothink",
    "Qwen/Qwen2.5-0.5B-Instruct": "qwen", "Qwen/Qwen2.5-1.5B-Instruct": "qwen", "Qwen/Qwen2.5-7B-Instruct": "qwen",
    "meta-llama/Llama-3.2-1B-Instruct": "llama3", "meta-llama/Llama-3.2-3B-Instruct": "llama3",
    "meta-llama/Llama-3.1-8B-Instruct": "llama3",
    "google/gemma-3-1b-it": "gemma3", "google/gemma-2-2b-it": "gemma2",
    "mistralai/Mistral-7B-Instruct-v0.3": "mistral", "microsoft/Phi-3-mini-4k-instruct": "phi3",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": "deepseek_r1", "THUDM/glm-4-9b-chat-hf": "glm4",
}
# Keys the memory estimate depends on: changing one recomputes it.
ESTIMATE_KEYS = ("model_name_or_path", "finetuning_type", "adapter_name_or_path", "flash_attn", "enable_liger_kernel",
                 "stage", "cutoff_len", "per_device_train_batch_size", "bf16", "fp16", "packing", "lora_rank",
                 "lora_target", "additional_target", "use_dora", "freeze_trainable_layers", "freeze_trainable_modules",
                 "freeze_extra_modules", "padding_free", "fused_loss", "disable_gradient_checkpointing",
                 "gradient_checkpointing", "use_unsloth_gc", "use_galore", "galore_rank", "galore_target", "use_apollo",
                 "apollo_rank", "apollo_target", "apollo_proj", "use_badam", "badam_mode", "badam_update_ratio",
                 "use_adam_mini", "use_muon")
# Keys every YAML the UI writes names even at their defaults, so it reads on its own.
ALWAYS = ("model_name_or_path", "stage", "finetuning_type", "template", "dataset", "output_dir")


def all_fields() -> dict[str, FieldSpec]:
    return {**schema_fields(), **TRAINING_ARGS}


def placed() -> set[str]:
    return set(TOP) | {key for groups in TABS.values() for group in groups for key in group.keys}


def other_keys() -> tuple[str, ...]:
    """Schema keys no tab places and not hidden: the Train tab's "other keys" group, in schema order."""
    taken = placed() | set(HIDDEN)
    return tuple(key for key in schema_fields() if key not in taken)


def tab_groups(tab: str) -> tuple[Group, ...]:
    groups = TABS[tab]
    if tab == "train":
        groups = (*groups, Group(OTHER, other_keys(), True))
    return groups


def tab_keys(tab: str) -> tuple[str, ...]:
    """The keys a tab's config is built from: the top bar's and the tab's own (each once, in order)."""
    keys = list(TOP)
    for group in tab_groups(tab):
        keys += [key for key in group.keys if key not in keys]
    return tuple(keys)


def visible_keys() -> set[str]:
    """Every key the page shows somewhere."""
    return set(TOP) | {key for tab in TABS for group in tab_groups(tab) for key in group.keys}
