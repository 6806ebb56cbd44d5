"""The run configuration: one pydantic model per section, flat LLaMA-Factory key names as fields.

Users write flat YAML (LLaMA-Factory style); `config.load` routes each key to the section that
owns it. Field names are unique across sections so that routing is unambiguous.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def split_list(value: Any) -> list[str] | None:
    """`a, b` / `a,b` / [a, b] -> ['a', 'b'] (LLaMA-Factory users write comma lists in YAML)."""
    if value is None:
        return None
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [str(part).strip() for part in value]
    else:
        raise ValueError(f"expected a name or a comma-separated list, got {value!r}")
    items = [item for item in items if item]
    return items or None


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelConfig(Section):
    model_name_or_path: str
    adapter_name_or_path: list[str] | None = None
    cache_dir: str | None = None
    model_revision: str = "main"
    trust_remote_code: bool = False
    use_fast_tokenizer: bool = True
    split_special_tokens: bool = False
    # auto | sdpa | eager | fa2 | disabled (LLaMA-Factory's names) -> attn_implementation
    flash_attn: Literal["auto", "sdpa", "eager", "fa2", "disabled"] = "auto"
    # LLaMA-Factory turns checkpointing on unless told otherwise (it costs ~30% speed). Here None
    # (auto) turns it on only when the memory estimate (model/memory/) exceeds the card;
    # false forces it on, true off; `gradient_checkpointing: true` also forces it on.
    disable_gradient_checkpointing: bool | None = None
    # Liger's Triton kernels (fused linear+CE, RMSNorm, RoPE, SwiGLU): None = on when installed on CUDA.
    enable_liger_kernel: bool | None = None
    # Our chunked linear+cross-entropy (never materialises full logits) when Liger is not used.
    fused_loss: bool = True
    # LLaMA-Factory's unsloth switches: accepted; tuneforge's own fast path is always on, and
    # use_unsloth_gc turns gradient checkpointing on.
    use_unsloth: bool = False
    use_unsloth_gc: bool = False
    infer_dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    model_max_length: int | None = Field(None, gt=0)

    @field_validator("adapter_name_or_path", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return split_list(v)


class DataConfig(Section):
    dataset: list[str] | None = None
    eval_dataset: list[str] | None = None
    dataset_dir: str = "data"
    template: str | None = None
    cutoff_len: int = Field(2048, gt=0)
    max_samples: int | None = Field(None, gt=0)
    val_size: float = Field(0.0, ge=0)
    train_on_prompt: bool = False
    mask_history: bool = False
    overwrite_cache: bool = False
    preprocessing_num_workers: int | None = Field(None, ge=1)
    default_system: str | None = None
    enable_thinking: bool | None = True
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = "concat"
    # Fills {{name}} / {{author}} in the identity dataset (and any dataset that uses them).
    identity_name: str | None = None
    identity_author: str | None = None
    # sft/pt batches are padding-free rows (samples end to end, isolated by the attention kernel);
    # false gives classic padded batches.
    padding_free: bool = True
    # Bin-pack samples into rows of cutoff_len tokens, still isolated (LLaMA-Factory's neat_packing
    # semantics; both names accepted). per_device_train_batch_size then counts packed rows.
    packing: bool = False
    neat_packing: bool = False
    # error: stop at the first bad record (default). skip: drop bad records, report how many.
    bad_records: Literal["error", "skip"] = "error"

    @field_validator("dataset", "eval_dataset", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return split_list(v)

    @field_validator("val_size")
    @classmethod
    def _val_size(cls, v: float) -> float:
        if v >= 1 and v != int(v):
            raise ValueError("val_size is a fraction below 1 or a whole number of samples")
        return v


class MethodConfig(Section):
    stage: Literal["sft", "pt", "rm", "dpo", "kto", "ppo", "grpo", "rloo"] = "sft"
    finetuning_type: Literal["lora", "freeze", "full"] = "lora"
    lora_rank: int = Field(8, gt=0)
    lora_alpha: float | None = Field(None, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target: list[str] = ["all"]
    additional_target: list[str] | None = None
    use_rslora: bool = False
    use_dora: bool = False
    create_new_adapter: bool = False
    freeze_trainable_layers: int = 2
    freeze_trainable_modules: list[str] = ["all"]
    freeze_extra_modules: list[str] | None = None
    plot_loss: bool = True

    @field_validator("lora_target", "freeze_trainable_modules", "additional_target",
                     "freeze_extra_modules", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return split_list(v)

    @model_validator(mode="after")
    def _alpha_default(self) -> MethodConfig:
        if self.lora_alpha is None:
            # LLaMA-Factory's default: alpha = 2 x rank
            object.__setattr__(self, "lora_alpha", float(self.lora_rank * 2))
        if self.freeze_trainable_layers == 0:
            raise ValueError("freeze_trainable_layers must not be 0 (positive: last N layers, "
                             "negative: first N layers)")
        return self


class TrainConfig(Section):
    """The TrainingArguments a user sets. Common ones are typed here; any other
    `transformers.TrainingArguments` field is accepted into `extra` (checked against the
    installed transformers at load time)."""

    output_dir: str | None = None
    overwrite_output_dir: bool = False
    do_train: bool = True
    do_eval: bool = False
    resume_from_checkpoint: str | bool | None = None
    per_device_train_batch_size: int = Field(1, gt=0)
    per_device_eval_batch_size: int = Field(1, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    num_train_epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, ge=-1)  # -1 (or 0): num_train_epochs decides
    lr_scheduler_type: str = "linear"
    warmup_steps: float = Field(0, ge=0)  # below 1: a fraction of the steps (also what warmup_ratio sets)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)  # 0: no clipping
    bf16: bool = False
    fp16: bool = False
    logging_steps: float = Field(10, gt=0)  # below 1: a fraction of the steps
    save_strategy: str = "steps"
    save_steps: float = Field(500, gt=0)
    save_total_limit: int | None = Field(None, ge=0)  # None or 0: keep every checkpoint
    eval_strategy: str = "no"
    eval_steps: float | None = Field(None, gt=0)
    seed: int = 42
    report_to: list[str] | str = "none"
    gradient_checkpointing: bool = False
    use_cpu: bool = False
    do_predict: bool = False
    predict_with_generate: bool = False
    extra: dict[str, Any] = {}

    @field_validator("warmup_steps", "logging_steps", "save_steps", "eval_steps")
    @classmethod
    def _steps(cls, v: float | None) -> float | None:
        if v is not None and v >= 1 and v != int(v):
            raise ValueError("must be a whole number of steps, or a fraction of the training steps below 1")
        return v

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to(cls, v: Any) -> Any:
        items = split_list(v) or ["none"]
        return items[0] if len(items) == 1 else items

    @field_validator("resume_from_checkpoint", mode="before")
    @classmethod
    def _resume(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in ("true", "false", "none", "null", ""):
            return {"true": True, "false": None, "none": None, "null": None, "": None}[v.strip().lower()]
        return None if v is False else v


class GenerateConfig(Section):
    max_new_tokens: int = Field(512, gt=0)
    do_sample: bool = True
    temperature: float = Field(0.95, ge=0)
    top_p: float = Field(0.7, gt=0, le=1)
    top_k: int = Field(50, ge=0)
    num_beams: int = Field(1, ge=1)
    length_penalty: float = 1.0
    repetition_penalty: float = Field(1.0, gt=0)
    skip_special_tokens: bool = True
    infer_backend: Literal["huggingface", "hf", "vllm"] = "huggingface"
    vllm_maxlen: int = Field(4096, gt=0)
    vllm_gpu_util: float = Field(0.7, gt=0, le=1)
    vllm_enforce_eager: bool = False
    vllm_max_lora_rank: int = Field(32, gt=0)


class PreferenceConfig(Section):
    """Preference and RL stages (rm, dpo, kto, ppo, grpo, rloo), LLaMA-Factory's key names."""

    pref_beta: float = Field(0.1, ge=0)
    pref_ftx: float = Field(0.0, ge=0)
    pref_loss: Literal["sigmoid", "hinge", "ipo", "orpo", "simpo"] = "sigmoid"
    dpo_label_smoothing: float = Field(0.0, ge=0, le=0.5)
    kto_chosen_weight: float = Field(1.0, gt=0)
    kto_rejected_weight: float = Field(1.0, gt=0)
    simpo_gamma: float = 0.5
    ref_model: str | None = None
    ref_model_adapters: list[str] | None = None
    reward_model: str | None = None
    reward_model_adapters: list[str] | None = None
    reward_model_type: Literal["lora", "full"] = "lora"
    ppo_buffer_size: int = Field(1, gt=0)
    ppo_epochs: int = Field(4, gt=0)
    ppo_score_norm: bool = False
    ppo_target: float = Field(6.0, gt=0)
    ppo_whiten_rewards: bool = False
    num_generations: int = Field(4, ge=2)
    # grpo/rloo: plain Python reward functions beside (or instead of) reward_model, each
    # "package.module:function" or "path/to/file.py:function" (trl's reward_funcs signature).
    reward_funcs: list[str] | None = None

    @field_validator("ref_model_adapters", "reward_model_adapters", "reward_funcs", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return split_list(v)


class ExportConfig(Section):
    export_dir: str | None = None
    export_size: float = Field(5, gt=0)  # GB per safetensors shard
    export_device: Literal["cpu", "auto"] = "cpu"
    export_dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    export_legacy_format: bool = False
    export_hub_model_id: str | None = None
    export_quantization_bit: int | None = None


class EvalConfig(Section):
    """Multiple-choice benchmark evaluation (`tuneforge eval`), LLaMA-Factory's key names."""

    task: str | None = None
    task_dir: str = "evaluation"
    n_shot: int = Field(5, ge=0)
    lang: Literal["en", "zh"] = "en"
    save_dir: str | None = None
    batch_size: int = Field(4, gt=0)


class RunConfig(BaseModel):
    """Everything one command needs, validated once. Inner code receives this, never dicts."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: ModelConfig
    data: DataConfig = DataConfig()
    method: MethodConfig = MethodConfig()
    train: TrainConfig = TrainConfig()
    generate: GenerateConfig = GenerateConfig()
    pref: PreferenceConfig = PreferenceConfig()
    export: ExportConfig = ExportConfig()
    eval: EvalConfig = EvalConfig()
    source: str | None = None  # the YAML file it came from, for messages

    def flat(self) -> dict[str, Any]:
        """The resolved config as flat LLaMA-Factory-style keys (written to training_args.yaml)."""
        out: dict[str, Any] = {}
        for section in (self.model, self.data, self.method, self.train, self.generate, self.pref, self.export,
                        self.eval):
            for key, value in section.model_dump().items():
                if key == "extra":
                    out.update(value)
                else:
                    out[key] = value
        return out


SECTIONS: dict[str, type[Section]] = {
    "model": ModelConfig,
    "data": DataConfig,
    "method": MethodConfig,
    "train": TrainConfig,
    "generate": GenerateConfig,
    "pref": PreferenceConfig,
    "export": ExportConfig,
    "eval": EvalConfig,
}
