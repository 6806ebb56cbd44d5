"""Fine-tuning methods: LoRA (peft; DoRA, rsLoRA, continuing adapters), freeze, full."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import MethodConfig, ModelConfig
from tuneforge.model.selection import expanded_layers, freeze_trained, lora_targets


# Quantized linears that are not nn.Linear subclasses (bitsandbytes' are; hqq's is not).
QUANTIZED_LINEARS = ("HQQLinear",)


def linear_module_names(model: Any) -> list[str]:
    """Short names of every linear layer (quantized ones included) except the output head: what
    `lora_target: all` means."""
    import torch

    head = model.get_output_embeddings()
    names = set()
    for full_name, module in model.named_modules():
        linear = isinstance(module, torch.nn.Linear) or type(module).__name__ in QUANTIZED_LINEARS
        if linear and module is not head:
            names.add(full_name.split(".")[-1])
    return sorted(names)


def is_quantized(model: Any) -> bool:
    """Loaded with a quantization config (QLoRA's base)."""
    return getattr(model, "hf_quantizer", None) is not None


def prepare_quantized(model: Any) -> Any:
    """A quantized base before LoRA goes on it. Its unquantized weights (embeddings, norms, head) stay in the
    dtype they loaded in, as plain LoRA's frozen weights do; only fp16 ones are raised to fp32 by peft's
    prepare_model_for_kbit_training (fp16's range is what its fp32 upcast protects; bf16 and fp32 need
    nothing, and the upcast would double those weights' memory). Checkpointing is the run's own decision
    (train/arguments.py, non-reentrant), so peft is not asked to switch it on."""
    import torch

    if any(p.dtype == torch.float16 for p in model.parameters()):
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model


def check_adapter_dir(path: str) -> None:
    if not (Path(path).expanduser() / "adapter_config.json").is_file():
        raise ConfigError(f"adapter_name_or_path '{path}' has no adapter_config.json (is it a LoRA adapter folder?)")


def adapter_base(path: str) -> str:
    """The base model an adapter says it was trained on (its adapter_config.json), or "unknown"."""
    import json

    try:
        config = json.loads((Path(path).expanduser() / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    return str(config.get("base_model_name_or_path") or "unknown") if isinstance(config, dict) else "unknown"


def open_adapter(model: Any, path: str, **kwargs: Any) -> Any:
    """peft's PeftModel.from_pretrained; an adapter trained on another base model is one ConfigError line that names
    both models, not peft's list of every mismatched tensor."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, path, **kwargs)
    except (RuntimeError, ValueError, KeyError) as exc:
        text = str(exc)
        if "size mismatch" not in text and "not found in the base model" not in text:
            raise
        detail = next((line.strip() for line in text.splitlines() if "size mismatch" in line or "not found" in line), "")
        base = getattr(model.config, "_name_or_path", "") or "this model"
        raise ConfigError(f"adapter '{path}' was trained on {adapter_base(path)} and does not fit {base} "
                          f"({detail[:200]}); load it on the model it was trained on") from None


def load_adapters(model: Any, paths: list[str], *, trainable_last: bool) -> Any:
    """Earlier adapters are merged into the base; the last one stays an adapter (trainable if asked)."""
    for path in paths:
        check_adapter_dir(path)
    for path in paths[:-1]:
        model = open_adapter(model, path).merge_and_unload()
    return open_adapter(model, paths[-1], is_trainable=trainable_last)


def apply_lora(model: Any, method: MethodConfig, model_cfg: ModelConfig) -> Any:
    from peft import get_peft_model

    from tuneforge.model.vision import lora_settings, vision_parts

    adapters = model_cfg.adapter_name_or_path or []
    if adapters and not method.create_new_adapter:
        return load_adapters(model, adapters, trainable_last=True)
    if adapters:  # create_new_adapter: merge the old ones, start a fresh adapter on top
        for path in adapters:
            check_adapter_dir(path)
            model = open_adapter(model, path).merge_and_unload()
    n_layers = getattr(model.config.get_text_config(), "num_hidden_layers", 0)
    parts = vision_parts(model.config)
    if parts is None:
        return get_peft_model(model, lora_config(method, linear_module_names(model), n_layers=n_layers))
    # a vision-language model: LoRA stays off its frozen parts (model/vision.py)
    vision = lora_settings(model, model_cfg, parts, linear_module_names(model))
    config = lora_config(method, vision["available"], extra_modules=tuple(vision["projector"] or ()),
                         n_layers=n_layers)
    config.exclude_modules = vision["exclude_modules"]
    return get_peft_model(model, config)


def lora_config(method: MethodConfig, available: list[str], *, task_type: str = "CAUSAL_LM",
                extra_modules: tuple[str, ...] = (), n_layers: int = 0) -> Any:
    """peft LoraConfig from the method settings; `lora_target: all` = every linear layer in `available`;
    with use_llama_pro, only the expanded blocks of the model's `n_layers` get adapters."""
    from peft import LoraConfig

    targets = lora_targets(method, available)
    to_save = [*extra_modules, *(method.additional_target or [])] or None
    return LoraConfig(task_type=task_type, r=method.lora_rank, lora_alpha=method.lora_alpha,
                      lora_dropout=method.lora_dropout, target_modules=targets, modules_to_save=to_save,
                      use_rslora=method.use_rslora, use_dora=method.use_dora, init_lora_weights=lora_init(method),
                      layers_to_transform=expanded_layers(method, n_layers) if method.use_llama_pro else None)


def lora_init(method: MethodConfig) -> bool | str:
    """peft's init_lora_weights: PiSSA (exact SVD, or pissa_iter fast-SVD iterations) or the usual one."""
    if not method.pissa_init:
        return True
    return "pissa" if method.pissa_iter == -1 else f"pissa_niter_{method.pissa_iter}"


def apply_freeze(model: Any, method: MethodConfig, also: tuple[str, ...] = ()) -> Any:
    import torch

    layers = model.config.get_text_config().num_hidden_layers  # a vision model's are its language model's
    trained = freeze_trained((name for name, _ in model.named_parameters()), layers,
                             method, also)
    for name, param in model.named_parameters():
        param.requires_grad_(name in trained)
        if param.requires_grad:
            param.data = param.data.to(torch.float32)  # trained weights keep fp32 master copies
    return model


def apply_method(model: Any, method: MethodConfig, model_cfg: ModelConfig) -> Any:
    from tuneforge.model.vision import freeze_parts, vision_parts

    parts = vision_parts(model.config)
    model = _apply_method(model, method, model_cfg)
    if parts is not None:  # a vision-language model: its frozen parts (freeze_vision_tower, ...) stay frozen
        freeze_parts(model, model_cfg, parts)
    return model


def _apply_method(model: Any, method: MethodConfig, model_cfg: ModelConfig) -> Any:
    import torch

    if method.finetuning_type == "lora":
        for param in model.parameters():
            param.requires_grad_(False)
        if is_quantized(model):
            model = prepare_quantized(model)
        return apply_lora(model, method, model_cfg)
    if is_quantized(model):  # config/load.py refuses this for training; a stage calling it directly gets a line too
        raise ConfigError(f"quantization_bit needs finetuning_type: lora (QLoRA); {method.finetuning_type} would "
                          "train the quantized weights themselves")
    if method.finetuning_type == "freeze":
        return apply_freeze(model, method)
    for param in model.parameters():
        param.requires_grad_(True)
        if param.dtype != torch.float32:
            param.data = param.data.to(torch.float32)
    return model


def count_parameters(model: Any) -> tuple[int, int]:
    trainable = total = 0
    for param in model.parameters():
        n = getattr(param, "ds_numel", None) or param.numel()  # ZeRO-3 leaves an empty shard; ds_numel is the whole
        if type(param).__name__ == "Params4bit":  # two 4-bit weights per byte of its storage dtype
            n *= 2 * getattr(getattr(param, "quant_storage", None), "itemsize", 1)
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total
