"""Fine-tuning methods: LoRA (peft; DoRA, rsLoRA, continuing adapters), freeze, full."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import MethodConfig, ModelConfig


def linear_module_names(model: Any) -> list[str]:
    """Short names of every nn.Linear except the output head (what `lora_target: all` means)."""
    import torch

    head = model.get_output_embeddings()
    names = set()
    for full_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            names.add(full_name.split(".")[-1])
    return sorted(names)


def check_adapter_dir(path: str) -> None:
    if not (Path(path).expanduser() / "adapter_config.json").is_file():
        raise ConfigError(f"adapter_name_or_path '{path}' has no adapter_config.json (is it a LoRA adapter folder?)")


def load_adapters(model: Any, paths: list[str], *, trainable_last: bool) -> Any:
    """Earlier adapters are merged into the base; the last one stays an adapter (trainable if asked)."""
    from peft import PeftModel

    for path in paths:
        check_adapter_dir(path)
    for path in paths[:-1]:
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
    return PeftModel.from_pretrained(model, paths[-1], is_trainable=trainable_last)


def apply_lora(model: Any, method: MethodConfig, model_cfg: ModelConfig) -> Any:
    from peft import get_peft_model

    adapters = model_cfg.adapter_name_or_path or []
    if adapters and not method.create_new_adapter:
        return load_adapters(model, adapters, trainable_last=True)
    if adapters:  # create_new_adapter: merge the old ones, start a fresh adapter on top
        from peft import PeftModel

        for path in adapters:
            check_adapter_dir(path)
            model = PeftModel.from_pretrained(model, path).merge_and_unload()
    return get_peft_model(model, lora_config(method, linear_module_names(model)))


def lora_config(method: MethodConfig, available: list[str], *, task_type: str = "CAUSAL_LM",
                extra_modules: tuple[str, ...] = ()) -> Any:
    """peft LoraConfig from the method settings; `lora_target: all` = every linear layer in `available`."""
    from peft import LoraConfig

    targets = available if method.lora_target == ["all"] else method.lora_target
    missing = [t for t in targets if t not in available]
    if missing:
        raise ConfigError(f"lora_target {', '.join(missing)} matches no linear layer of this model "
                          f"(it has: {', '.join(available)}; or use 'all')")
    to_save = [*extra_modules, *(method.additional_target or [])] or None
    return LoraConfig(task_type=task_type, r=method.lora_rank, lora_alpha=method.lora_alpha,
                      lora_dropout=method.lora_dropout, target_modules=targets, modules_to_save=to_save,
                      use_rslora=method.use_rslora, use_dora=method.use_dora)


def apply_freeze(model: Any, method: MethodConfig) -> Any:
    import torch

    n_layers = model.config.num_hidden_layers
    count = method.freeze_trainable_layers
    if abs(count) > n_layers:
        raise ConfigError(f"freeze_trainable_layers {count} exceeds the model's {n_layers} layers")
    layer_ids = range(n_layers - count, n_layers) if count > 0 else range(-count)
    modules = method.freeze_trainable_modules
    prefixes = [f".layers.{i}." for i in layer_ids]
    extra = method.freeze_extra_modules or []
    matched_module = set()
    for name, param in model.named_parameters():
        in_layer = any(p in name for p in prefixes)
        if in_layer and modules != ["all"]:
            hit = [m for m in modules if f".{m}." in name]
            matched_module.update(hit)
            in_layer = bool(hit)
        in_extra = any(f".{m}." in f".{name}" or name.startswith(f"{m}.") for m in extra)
        param.requires_grad_(in_layer or in_extra)
        if param.requires_grad:
            param.data = param.data.to(torch.float32)
    if modules != ["all"] and set(modules) - matched_module:
        raise ConfigError(f"freeze_trainable_modules {', '.join(sorted(set(modules) - matched_module))} matches "
                          "nothing in the trainable layers (e.g. use mlp, self_attn or all)")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("freeze settings leave no trainable parameter")
    return model


def apply_method(model: Any, method: MethodConfig, model_cfg: ModelConfig) -> Any:
    import torch

    if method.finetuning_type == "lora":
        for param in model.parameters():
            param.requires_grad_(False)
        return apply_lora(model, method, model_cfg)
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
        n = param.numel()
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total
