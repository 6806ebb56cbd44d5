"""LLaMA-Factory key names that tuneforge knows about but handles differently.

Facts about its YAML vocabulary, so that its users get a precise message instead of
"unknown key" when they bring a config over.
"""

from __future__ import annotations

# Stage names users try that are spelt differently here.
STAGE_HINTS = {"orpo": "use stage: dpo with pref_loss: orpo", "simpo": "use stage: dpo with pref_loss: simpo",
               "kto_pair": "use stage: kto"}

_QUANT = "a separate bit width for the reference and reward models is planned (quantization_bit loads them quantized too)"
_FAST = "tuneforge keeps its own fast path (see enable_liger_kernel, fused_loss)"

LF_UNSUPPORTED: dict[str, str] = {
    # quantization (quantization_bit, quantization_method, quantization_type, double_quantization are keys)
    "quantization_device_map": "a quantized model is placed on one device; spreading it over several is planned",
    # speed / kernels
    # LongLoRA's shift short attention is a monkey-patch of Llama's attention forward in LLaMA-Factory, which its
    # own version check limits to transformers 4.45-4.47
    "shift_attn": "LongLoRA's S^2-attention replaces Llama's attention forward, and LLaMA-Factory's own patch runs only "
                  "on transformers 4.45-4.47; on transformers 5 long contexts train with full attention (padding-free "
                  "rows, flash_attn)",
    "mixture_of_depths": "mixture-of-depths conversion is not planned",
    "use_reentrant_gc": "non-reentrant checkpointing is always used", "upcast_layernorm": _FAST,
    "upcast_lmhead_output": _FAST, "train_from_scratch": "training from random weights is planned",
    "resize_vocab": "vocabulary resizing is planned", "new_special_tokens": "adding tokens is planned",
    "add_tokens": "adding tokens is planned", "add_special_tokens": "adding tokens is planned",
    "moe_aux_loss_coef": "MoE auxiliary loss settings are planned",
    # data
    "tool_format": "tool formats other than the template's own are planned",
    "media_dir": "image paths are relative to dataset_dir (or absolute)",
    "eval_on_each_dataset": "per-dataset evaluation is planned",
    # preference / RL
    "ref_model_quantization_bit": _QUANT, "reward_model_quantization_bit": _QUANT,
    "ld_alpha": "LD-DPO length desensitisation is planned", "pref_bco_weight": "BCO weighting is planned",
    # evaluation extras
    "compute_accuracy": "token accuracy metrics are planned",
    "ms_hub_token": "log in once with `modelscope login` (modelscope keeps the token)",
    "om_hub_token": "the Modelers hub is not supported; download the model and give its folder",
    "offload_folder": "offloading weights to disk is not supported", "adapter_folder": "give adapter_name_or_path",
    "vllm_config": "use vllm_maxlen, vllm_gpu_util, vllm_enforce_eager and vllm_max_lora_rank",
    "use_dft_loss": "the DFT loss is planned", "use_kt": "KTransformers is not planned",
    **{f"swanlab_{k}": f"set SWANLAB_{k.upper()} in the environment (transformers' swanlab logger reads it; "
                      "use_swanlab: true or report_to: swanlab turns the logger on)"
       for k in ("project", "workspace", "mode", "api_key", "logdir")},
    "early_stopping_steps": "early stopping is planned",
}

# old key -> (new key or None to drop, note to print or "")
RENAMED: dict[str, tuple[str | None, str]] = {
    # warmup_ratio -> a float warmup_steps below 1 (transformers 5), checked in config/load.py
    "no_cuda": ("use_cpu", ""),
    "evaluation_strategy": ("eval_strategy", ""),
    "logging_dir": (None, "is ignored: transformers 5 has no logging_dir (set TENSORBOARD_LOGGING_DIR)"),
    "save_safetensors": (None, ""),  # always safetensors
    "include_tokens_per_second": (None, ""),  # tokens/s is always reported
    "group_by_length": (None, ""),  # -> train_sampling_strategy: group_by_length
    "disable_shuffling": (None, "is ignored; use train_sampling_strategy: sequential"),
}

# (key, value) -> the value meant: values LLaMA-Factory's web UI and older docs write
VALUE_ALIASES: dict[tuple[str, str], object] = {("flash_attn", "flashattn2"): "fa2"}
# LlamaBoard's "booster" choice -> the key it sets (LlamaBoard turns it into these keys itself)
BOOSTERS: dict[str, tuple[str, object]] = {"flashattn2": ("flash_attn", "fa2"), "unsloth": ("use_unsloth", True),
                                           "liger_kernel": ("enable_liger_kernel", True)}

# (key, value) -> what to do instead, for values LLaMA-Factory users write that we do not take
VALUE_HINTS: dict[tuple[str, str], str] = {
    ("finetuning_type", "qlora"): "QLoRA is finetuning_type: lora with quantization_bit: 4",
    ("finetuning_type", "oft"): "OFT is planned; use lora",
}
