"""The run configuration: one pydantic model per section, flat LLaMA-Factory key names as fields.

Users write flat YAML (LLaMA-Factory style); `config.load` routes each key to the section that
owns it. Field names are unique across sections so that routing is unambiguous.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneforge.config.extras import MethodExtras


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


# quantization_method -> the bit widths it quantizes to (bitsandbytes: nf4/fp4 or LLM.int8; hqq: 1-4 or 8)
QUANTIZATION_BITS = {"bnb": (4, 8), "hqq": (1, 2, 3, 4, 8)}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelConfig(Section):
    model_name_or_path: str = Field(
        description="The base model: a local folder saved by save_pretrained, a Hugging Face hub id, or "
                    "tuneforge/tiny")
    adapter_name_or_path: list[str] | None = Field(None,
        description="LoRA adapter folders to load on the base model (comma-separated); training continues the last "
                    "one")
    cache_dir: str | None = Field(None,
        description="Where downloaded models are cached (default: the Hugging Face cache)")
    model_revision: str = Field("main", description="The hub revision of the model: a branch, tag or commit id")
    trust_remote_code: bool = Field(False,
        description="Run the model's own Python code from the hub (only for models you trust)")
    use_fast_tokenizer: bool = Field(True, description="Use the fast (Rust) tokenizer when the model has one")
    split_special_tokens: bool = Field(False,
        description="Split special tokens written in the text into ordinary tokens")
    # auto | sdpa | eager | fa2 | disabled (LLaMA-Factory's names) -> attn_implementation
    flash_attn: Literal["auto", "sdpa", "eager", "fa2", "disabled"] = Field("auto",
        description="Attention kernel: auto picks the fastest available; fa2 needs flash-attn; disabled means eager")
    # LLaMA-Factory turns checkpointing on unless told otherwise (it costs ~30% speed). Here None
    # (auto) turns it on only when the memory estimate (model/memory/) exceeds the card;
    # false forces it on, true off; `gradient_checkpointing: true` also forces it on.
    disable_gradient_checkpointing: bool | None = Field(None,
        description="Empty: checkpointing only when the memory estimate exceeds the card; false: always on; true: "
                    "off")
    # Liger's Triton kernels (fused linear+CE, RMSNorm, RoPE, SwiGLU): None = on when installed on CUDA.
    enable_liger_kernel: bool | None = Field(None,
        description="Liger's fused Triton kernels; empty: on when installed on a CUDA GPU")
    # Our chunked linear+cross-entropy (never materialises full logits) when Liger is not used.
    fused_loss: bool = Field(True,
        description="Compute the loss in chunks without materialising the full logits (when Liger is not used)")
    # LLaMA-Factory's unsloth switches: accepted; tuneforge's own fast path is always on, and
    # use_unsloth_gc turns gradient checkpointing on.
    use_unsloth: bool = Field(False,
        description="LLaMA-Factory's unsloth switch: accepted; tuneforge's own fast path is always on")
    use_unsloth_gc: bool = Field(False,
        description="Turn gradient checkpointing on (LLaMA-Factory's unsloth checkpointing switch)")
    infer_dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field("auto",
        description="The dtype of the weights for chat, predict and the API (auto: the model's own)")
    model_max_length: int | None = Field(None, gt=0, description="Override the tokenizer's maximum sequence length")
    # LLaMA-Factory's RoPE scaling: the factor follows from model_max_length (cutoff_len when training), model/rope.py
    rope_scaling: Literal["linear", "dynamic", "yarn", "llama3"] | None = Field(None,
        description="Stretch the model's RoPE positions to a longer context: linear, dynamic (NTK), yarn or llama3; "
                    "the factor is model_max_length (cutoff_len when training) / the model's positions, rounded up")
    # QLoRA: the base loads quantized (bitsandbytes, or hqq where installed) and LoRA trains on it.
    quantization_bit: int | None = Field(None,
        description="Load the base model quantized to this many bits (bnb: 4 or 8; hqq: 1-4 or 8) and train LoRA "
                    "on it (QLoRA)")
    quantization_method: Literal["bnb", "hqq"] = Field("bnb",
        description="How the base is quantized on loading: bnb (bitsandbytes) or hqq")
    quantization_type: Literal["nf4", "fp4"] = Field("nf4", description="bnb 4-bit: the 4-bit data type, nf4 or fp4")
    double_quantization: bool = Field(True,
        description="bnb 4-bit: quantize the quantization constants too (saves about 0.4 bits per weight)")
    # Vision-language models (LLaMA-Factory's names and defaults): what stays frozen besides the method's choice.
    freeze_vision_tower: bool = Field(True, description="Vision models: keep the vision encoder frozen")
    freeze_multi_modal_projector: bool = Field(True,
        description="Vision models: keep the projector (vision features -> language model) frozen")
    freeze_language_model: bool = Field(False,
        description="Vision models: keep the language model frozen (train only the unfrozen vision parts)")

    @field_validator("adapter_name_or_path", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return split_list(v)


class DataConfig(Section):
    dataset: list[str] | None = Field(None,
        description="Training datasets: names from dataset_info.json in dataset_dir, or built-in ones "
                    "(comma-separated)")
    eval_dataset: list[str] | None = Field(None,
        description="Datasets to evaluate or predict on (comma-separated names)")
    dataset_dir: str = Field("data", description="The folder holding dataset_info.json and the dataset files")
    template: str | None = Field(None,
        description="The chat template that renders conversations; empty picks the tokenizer's own chat_template")
    cutoff_len: int = Field(2048, gt=0, description="Maximum tokens per sample; longer samples are truncated")
    max_samples: int | None = Field(None, gt=0, description="Use at most this many samples from each dataset")
    val_size: float = Field(0.0, ge=0,
        description="Hold out this share (below 1) or this number of training samples for evaluation")
    train_on_prompt: bool = Field(False, description="Also train on the prompt tokens, not only on the answers")
    mask_history: bool = Field(False, description="Train only on the last answer of each conversation")
    overwrite_cache: bool = Field(False,
        description="Encode the datasets again instead of reusing the tokenized cache")
    preprocessing_num_workers: int | None = Field(None, ge=1, description="Processes used to encode the datasets")
    default_system: str | None = Field(None, description="The system prompt used when a sample has none")
    enable_thinking: bool | None = Field(True,
        description="For thinking templates (qwen3): false puts an empty think block in the prompt")
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = Field("concat",
        description="How several datasets are mixed: concatenated, or interleaved until the smallest/largest ends")
    # Fills {{name}} / {{author}} in the identity dataset (and any dataset that uses them).
    identity_name: str | None = Field(None, description="Fills {{name}} in the identity dataset")
    identity_author: str | None = Field(None, description="Fills {{author}} in the identity dataset")
    # sft/pt batches are padding-free rows (samples end to end, isolated by the attention kernel);
    # false gives classic padded batches.
    padding_free: bool = Field(True,
        description="sft/pt: put samples end to end without padding (isolated by the attention kernel)")
    # Bin-pack samples into rows of cutoff_len tokens, still isolated (LLaMA-Factory's neat_packing
    # semantics; both names accepted). per_device_train_batch_size then counts packed rows.
    packing: bool = Field(False,
        description="Bin-pack samples into rows of cutoff_len tokens (each still isolated); batch size then counts "
                    "rows")
    neat_packing: bool = Field(False,
        description="LLaMA-Factory's name for packing with isolated samples; same as packing")
    # Datasets larger than memory: read lazily and encoded as batches arrive (needs max_steps).
    streaming: bool = Field(False,
        description="Read and encode the datasets lazily while training (for data larger than memory; needs "
                    "max_steps)")
    buffer_size: int = Field(16384, gt=0,
        description="streaming: records held in the shuffle buffer (the order is shuffled within it)")
    interleave_probs: list[float] | None = Field(None,
        description="interleave_under/over: the probability of drawing from each dataset (comma-separated, one per "
                    "dataset, adding up to 1)")
    tokenized_path: str | None = Field(None,
        description="A folder for the tokenized datasets: saved there when it does not exist, loaded from it "
                    "(skipping reading and tokenizing) when it does")
    # error: stop at the first bad record (default). skip: drop bad records, report how many.
    bad_records: Literal["error", "skip"] = Field("error",
        description="error: stop at the first bad record; skip: drop bad records and report how many")
    # Images are resized (keeping their aspect ratio) into this pixel range before the vision encoder sees them.
    image_max_pixels: int = Field(768 * 768, gt=0,
        description="Vision models: images larger than this many pixels are scaled down (fewer image tokens)")
    image_min_pixels: int = Field(32 * 32, gt=0,
        description="Vision models: images smaller than this many pixels are scaled up")
    # Videos (LLaMA-Factory's keys): frames sampled at video_fps, at most video_maxlen, each resized like an image.
    video_fps: float = Field(2.0, gt=0,
        description="Vision models: frames sampled per second of video")
    video_maxlen: int = Field(128, gt=0,
        description="Vision models: at most this many frames sampled from one video")
    video_max_pixels: int = Field(256 * 256, gt=0,
        description="Vision models: video frames larger than this many pixels are scaled down (fewer video tokens)")
    video_min_pixels: int = Field(16 * 16, gt=0,
        description="Vision models: video frames smaller than this many pixels are scaled up")

    @field_validator("dataset", "eval_dataset", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return split_list(v)

    @field_validator("interleave_probs", mode="before")
    @classmethod
    def _probs(cls, v: Any) -> Any:
        return split_list(v) if isinstance(v, str) else v

    @field_validator("val_size")
    @classmethod
    def _val_size(cls, v: float) -> float:
        if v >= 1 and v != int(v):
            raise ValueError("val_size is a fraction below 1 or a whole number of samples")
        return v


class MethodConfig(Section, MethodExtras):  # the method extras (LoRA+, PiSSA, GaLore, ...): config/extras.py
    stage: Literal["sft", "pt", "rm", "dpo", "kto", "ppo", "grpo", "rloo"] = Field("sft",
        description="Training stage: sft, pt (pre-training), rm (reward model), dpo, kto, ppo, grpo or rloo")
    finetuning_type: Literal["lora", "freeze", "full"] = Field("lora",
        description="What is trained: lora (small adapters), freeze (the last layers) or full (every weight)")
    lora_rank: int = Field(8, gt=0, description="LoRA rank: the size of the adapter matrices")
    lora_alpha: float | None = Field(None, gt=0, description="LoRA scaling factor (empty: 2 x lora_rank)")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA inputs during training")
    lora_target: list[str] = Field(["all"],
        description="Modules that get LoRA adapters: all (every linear layer) or names such as q_proj,v_proj")
    additional_target: list[str] | None = Field(None,
        description="Other modules trained in full and saved with the adapter (e.g. embed_tokens)")
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA scaling (alpha / sqrt(rank))")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA)")
    create_new_adapter: bool = Field(False,
        description="Merge the loaded adapters into the model and train a fresh adapter on top")
    freeze_trainable_layers: int = Field(2,
        description="freeze: train the last N layers (positive) or the first N layers (negative)")
    freeze_trainable_modules: list[str] = Field(["all"],
        description="freeze: modules trained inside those layers (all, or names such as mlp,self_attn)")
    freeze_extra_modules: list[str] | None = Field(None,
        description="freeze: modules trained anywhere in the model besides those layers (e.g. embed_tokens)")
    plot_loss: bool = Field(True, description="Save loss plots (training_loss.png) in output_dir after training")

    @field_validator("lora_target", "freeze_trainable_modules", "additional_target",
                     "freeze_extra_modules", "galore_target", "apollo_target", mode="before")
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

    output_dir: str | None = Field(None,
        description="The folder this run writes to: checkpoints, adapter or weights, logs and plots")
    overwrite_output_dir: bool = Field(False,
        description="Write over the earlier run in output_dir (its checkpoints and logs are removed)")
    # false by default, as in LLaMA-Factory and transformers: a training config says do_train: true
    do_train: bool = Field(False, description="Train (the default is false, as in LLaMA-Factory: a training config "
                                              "says do_train: true; false with do_predict only predicts)")
    do_eval: bool = Field(False, description="Evaluate on the held-out data at the end of training")
    resume_from_checkpoint: str | bool | None = Field(None,
        description="Continue a stopped run: true (the latest checkpoint in output_dir) or a checkpoint folder")
    per_device_train_batch_size: int = Field(1, gt=0,
        description="Samples per device per step (packed rows when packing is on)")
    per_device_eval_batch_size: int = Field(1, gt=0,
        description="Samples per device per evaluation or prediction batch")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-batches added up before each optimizer step")
    learning_rate: float = Field(5e-5, gt=0, description="The peak learning rate of AdamW")
    num_train_epochs: float = Field(3.0, gt=0, description="How many times to go through the training data")
    max_steps: int = Field(-1, ge=-1,  # -1 (or 0): num_train_epochs decides
        description="Stop after this many optimizer steps (-1: num_train_epochs decides)")
    lr_scheduler_type: str = Field("linear",
        description="How the learning rate changes over training (linear, cosine, constant, ...)")
    warmup_steps: float = Field(0, ge=0,  # below 1: a fraction of the steps (also what warmup_ratio sets)
        description="Steps of linear warm-up; below 1: a share of all the training steps")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0,  # 0: no clipping
        description="Clip gradients to this norm (0: no clipping)")
    bf16: bool = Field(False, description="Train in bfloat16 mixed precision")
    fp16: bool = Field(False, description="Train in float16 mixed precision")
    pure_bf16: bool = Field(False,
        description="Load the weights in bfloat16 and train them without mixed precision (needs a GPU with bf16)")
    logging_steps: float = Field(10, gt=0,  # below 1: a fraction of the steps
        description="Log loss and learning rate every N steps (below 1: a share of the steps)")
    save_strategy: str = Field("steps", description="When to save checkpoints: steps, epoch or no")
    save_steps: float = Field(500, gt=0,
        description="Save a checkpoint every N steps (below 1: a share of the steps)")
    save_total_limit: int | None = Field(None, ge=0,  # None or 0: keep every checkpoint
        description="Keep only the newest N checkpoints (empty or 0: keep all)")
    eval_strategy: str = Field("no", description="When to evaluate during training: no, steps or epoch")
    eval_steps: float | None = Field(None, gt=0, description="Evaluate every N steps (empty: same as logging_steps)")
    seed: int = Field(42, description="Random seed for data order and initialisation")
    report_to: list[str] | str = Field("none",
        description="Where to report metrics: none, tensorboard, wandb, ... (comma-separated)")
    gradient_checkpointing: bool = Field(False,
        description="Force gradient checkpointing on (saves memory, costs speed)")
    use_cpu: bool = Field(False, description="Train on the CPU even when a GPU is present")
    do_predict: bool = Field(False,
        description="After training (or instead of it), generate answers for eval_dataset")
    predict_with_generate: bool = Field(False, description="Prediction generates text (needed by do_predict)")
    extra: dict[str, Any] = Field({}, description="Any other transformers TrainingArguments key")

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
    max_new_tokens: int = Field(512, gt=0, description="Maximum tokens generated per answer")
    do_sample: bool = Field(True, description="Sample the next token (false: greedy decoding)")
    temperature: float = Field(0.95, ge=0, description="Sampling temperature: lower is more deterministic")
    top_p: float = Field(0.7, gt=0, le=1,
        description="Nucleus sampling: keep the smallest set of tokens whose probability adds up to top_p")
    top_k: int = Field(50, ge=0, description="Sample among the k most likely tokens (0: no limit)")
    num_beams: int = Field(1, ge=1, description="Beam search width (1: no beam search)")
    length_penalty: float = Field(1.0, description="Beam search: above 1 favours longer answers")
    repetition_penalty: float = Field(1.0, gt=0, description="Penalise repeated tokens (1: no penalty)")
    skip_special_tokens: bool = Field(True, description="Leave special tokens out of the generated text")
    infer_backend: Literal["huggingface", "hf", "vllm"] = Field("huggingface",
        description="Inference engine: huggingface (hf) or vllm")
    vllm_maxlen: int = Field(4096, gt=0, description="vLLM: maximum prompt + answer tokens")
    vllm_gpu_util: float = Field(0.7, gt=0, le=1, description="vLLM: share of the GPU memory it may use")
    vllm_enforce_eager: bool = Field(False, description="vLLM: disable CUDA graphs")
    vllm_max_lora_rank: int = Field(32, gt=0, description="vLLM: the largest LoRA rank it can load")


class PreferenceConfig(Section):
    """Preference and RL stages (rm, dpo, kto, ppo, grpo, rloo), LLaMA-Factory's key names."""

    pref_beta: float = Field(0.1, ge=0,
        description="DPO/KTO/ORPO/SimPO beta: how strongly the policy is kept near the reference")
    pref_ftx: float = Field(0.0, ge=0, description="Weight of an extra supervised (SFT) loss on the chosen answers")
    pref_loss: Literal["sigmoid", "hinge", "ipo", "orpo", "simpo"] = Field("sigmoid",
        description="DPO loss: sigmoid, hinge, ipo, orpo (no reference model) or simpo (no reference model)")
    dpo_label_smoothing: float = Field(0.0, ge=0, le=0.5,
        description="DPO label smoothing for noisy preferences (0 to 0.5)")
    kto_chosen_weight: float = Field(1.0, gt=0, description="KTO: weight of the desirable answers")
    kto_rejected_weight: float = Field(1.0, gt=0, description="KTO: weight of the undesirable answers")
    simpo_gamma: float = Field(0.5, description="SimPO target reward margin")
    ref_model: str | None = Field(None,
        description="The reference model (empty: the base model, or the policy without its adapter)")
    ref_model_adapters: list[str] | None = Field(None,
        description="Adapters loaded on the reference model (comma-separated)")
    reward_model: str | None = Field(None,
        description="ppo/grpo/rloo: the reward model (a folder trained with stage rm)")
    reward_model_adapters: list[str] | None = Field(None,
        description="Adapters loaded on the reward model (comma-separated)")
    reward_model_type: Literal["lora", "full"] = Field("lora",
        description="How the reward model was trained: lora (an adapter) or full")
    ppo_buffer_size: int = Field(1, gt=0, description="PPO: mini-batches of prompts per generation step")
    ppo_epochs: int = Field(4, gt=0, description="PPO: optimisation epochs over each batch of generations")
    ppo_score_norm: bool = Field(False, description="PPO: normalise the reward scores")
    ppo_target: float = Field(6.0, gt=0, description="PPO: target KL divergence of the adaptive KL controller")
    ppo_whiten_rewards: bool = Field(False, description="PPO: whiten the rewards before computing advantages")
    num_generations: int = Field(4, ge=2, description="grpo/rloo: answers generated per prompt")
    # grpo/rloo: plain Python reward functions beside (or instead of) reward_model, each
    # "package.module:function" or "path/to/file.py:function" (trl's reward_funcs signature).
    reward_funcs: list[str] | None = Field(None,
        description="grpo/rloo: Python reward functions, module:function or file.py:function (comma-separated)")

    @field_validator("ref_model_adapters", "reward_model_adapters", "reward_funcs", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return split_list(v)


class ExportConfig(Section):
    export_dir: str | None = Field(None, description="The folder the merged model is written to")
    export_size: float = Field(5, gt=0,  # GB per safetensors shard
        description="Maximum size of one safetensors shard, in GB")
    export_device: Literal["cpu", "auto"] = Field("cpu",
        description="Where to merge: cpu, or auto (the GPU when there is one)")
    export_dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field("auto",
        description="The dtype of the exported weights (auto: the model's own)")
    export_legacy_format: bool = Field(False,
        description="Write pytorch .bin files (not supported: tuneforge writes safetensors)")
    export_hub_model_id: str | None = Field(None,
        description="Upload to this hub repository (not supported yet: upload the folder yourself)")
    export_quantization_bit: int | None = Field(None,
        description="Quantize the exported weights to 4 or 8 bits (see export_quantization_method)")
    export_quantization_method: Literal["bnb", "gptq", "autoround"] | None = Field(None,
        description="How to quantize: bnb (bitsandbytes, CUDA), gptq or autoround (calibrated; autoround runs on the CPU); "
                    "unset: gptq when export_quantization_dataset is set, else bnb")
    export_quantization_dataset: str | None = Field(None,
        description="Calibration data for gptq/autoround: a dataset name (dataset_info.json) or a .json/.jsonl/.txt file")
    export_quantization_nsamples: int = Field(128, gt=0, description="Calibration samples for gptq/autoround")
    export_quantization_maxlen: int = Field(1024, gt=0, description="Tokens per calibration sample")
    export_quantization_iters: int = Field(200, ge=0,
        description="autoround: tuning steps per block (200, its default; 0 rounds to nearest, the fastest)")
    export_format: Literal["safetensors", "gguf"] = Field("safetensors",
        description="safetensors (transformers, vLLM), or gguf (llama.cpp, Ollama) written beside it")
    export_gguf: str | None = Field(None,
        description="GGUF type, e.g. f16, bf16, q8_0, q4_k_m, q5_k_m, q6_k (setting it means export_format: gguf; "
                    "default q8_0)")


class EvalConfig(Section):
    """Multiple-choice benchmark evaluation (`tuneforge eval`), LLaMA-Factory's key names."""

    task: str | None = Field(None,
        description="Benchmark task and split, e.g. mmlu_test, ceval_validation, tinybench_test")
    task_dir: str = Field("evaluation", description="The folder holding the benchmark tasks")
    n_shot: int = Field(5, ge=0, description="Solved examples shown before each question")
    lang: Literal["en", "zh"] = Field("en", description="Language of the benchmark prompts: en or zh")
    save_dir: str | None = Field(None, description="Where results.json and results.log are written")
    batch_size: int = Field(4, gt=0, description="Questions scored per batch")


class DistConfig(Section):
    """Several processes (LLaMA-Factory's names): DeepSpeed ZeRO or FSDP through the HF Trainer, and Ray Train
    (`USE_RAY=1`). torchrun's own settings come from the environment (NNODES, NODE_RANK, MASTER_ADDR,
    MASTER_PORT, NPROC_PER_NODE, FORCE_TORCHRUN; see launch/torchrun.py)."""

    deepspeed: str | dict[str, Any] | None = Field(None,
        description="DeepSpeed config: a JSON file (examples/deepspeed/ds_z3_config.json) or its content; "
                    "\"auto\" values are filled from this config")
    fsdp: str | list[str] | bool | None = Field(None,
        description="PyTorch FSDP through the Trainer, e.g. full_shard auto_wrap (GPUs only: on a CPU it is plain "
                    "data parallel)")
    fsdp_config: str | dict[str, Any] | None = Field(None,
        description="FSDP options: a JSON file or a mapping (e.g. version: 2 for FSDP2)")
    ray_num_workers: int = Field(1, ge=1, description="Ray: how many training workers (USE_RAY=1)")
    ray_init_kwargs: dict[str, Any] | None = Field(None,
        description="Ray: keyword arguments for ray.init, e.g. address: auto")
    ray_run_name: str | None = Field(None, description="Ray: the run's name (its folder under ray_storage_path)")
    ray_storage_path: str = Field("./saves", description="Ray: where Ray Train keeps its run records")
    resources_per_worker: dict[str, float] | None = Field(None,
        description="Ray: resources each worker reserves (default: one GPU where there are GPUs, else one CPU)")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field("PACK",
        description="Ray: how workers are placed on the cluster's nodes")

    @field_validator("ray_init_kwargs", "resources_per_worker", mode="before")
    @classmethod
    def _json_mapping(cls, v: Any) -> Any:
        if isinstance(v, str):  # LLaMA-Factory takes these as JSON on the command line
            import json

            try:
                return json.loads(v)
            except ValueError:
                raise ValueError(f"expected a mapping or its JSON, got {v!r}") from None
        return v


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
    dist: DistConfig = DistConfig()
    source: str | None = None  # the YAML file it came from, for messages

    def flat(self) -> dict[str, Any]:
        """The resolved config as flat LLaMA-Factory-style keys (written to training_args.yaml)."""
        out: dict[str, Any] = {}
        for section in (self.model, self.data, self.method, self.train, self.generate, self.pref, self.export,
                        self.eval, self.dist):
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
    "dist": DistConfig,
}
