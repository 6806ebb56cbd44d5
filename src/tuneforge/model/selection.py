"""Which parameters a fine-tuning method trains, decided on names alone: the freeze method's layers
and modules, and LoRA's target modules. The real model (model/adapters.py) and the memory
estimate (model/memory/shape.py, which has only config.json) both ask here, so they cannot drift."""

from __future__ import annotations

from collections.abc import Iterable

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import MethodConfig


def freeze_trained(names: Iterable[str], n_layers: int, method: MethodConfig,
                   also: tuple[str, ...] = ()) -> set[str]:
    """The parameter names `finetuning_type: freeze` trains: the last (positive count) or first
    (negative count) `freeze_trainable_layers` decoder layers, limited to `freeze_trainable_modules`,
    plus `freeze_extra_modules` (and the stage's own `also`, e.g. a reward head) anywhere."""
    count = method.freeze_trainable_layers
    if abs(count) > n_layers:
        raise ConfigError(f"freeze_trainable_layers {count} exceeds the model's {n_layers} layers")
    if method.use_llama_pro:
        layer_ids = expanded_layers(method, n_layers)
    else:
        layer_ids = range(n_layers - count, n_layers) if count > 0 else range(-count)
    prefixes = [f".layers.{i}." for i in layer_ids]
    modules, extra = method.freeze_trainable_modules, [*(method.freeze_extra_modules or []), *also]
    trained, matched = set(), set()
    for name in names:
        in_layer = any(p in name for p in prefixes)
        if in_layer and modules != ["all"]:
            hit = [m for m in modules if f".{m}." in name]
            matched.update(hit)
            in_layer = bool(hit)
        if in_layer or any(f".{m}." in f".{name}" or name.startswith(f"{m}.") for m in extra):
            trained.add(name)
    if modules != ["all"] and set(modules) - matched:
        raise ConfigError(f"freeze_trainable_modules {', '.join(sorted(set(modules) - matched))} matches "
                          "nothing in the trainable layers (e.g. use mlp, self_attn or all)")
    if not trained:
        raise ConfigError("freeze settings leave no trainable parameter")
    return trained


def lora_targets(method: MethodConfig, available: Iterable[str]) -> list[str]:
    """The module names LoRA wraps: `lora_target` checked against the model's linear layers
    (`all` = every one of them)."""
    available = sorted(available)
    targets = available if method.lora_target == ["all"] else method.lora_target
    missing = [t for t in targets if t not in available]
    if missing:
        raise ConfigError(f"lora_target {', '.join(missing)} matches no linear layer of this model "
                          f"(it has: {', '.join(available)}; or use 'all')")
    return list(targets)


def expanded_layers(method: MethodConfig, n_layers: int) -> list[int]:
    """LLaMA Pro: the blocks `tuneforge expand` added to a model now `n_layers` deep, when it added
    `freeze_trainable_layers` of them: one after every (n_layers / count - 1) original blocks, i.e. the last
    block of each group of n_layers / count."""
    count = method.freeze_trainable_layers
    if count <= 0 or n_layers % count:
        raise ConfigError(f"use_llama_pro: freeze_trainable_layers is the number of blocks `tuneforge expand` added "
                          f"(--num_expand), which divides the model's {n_layers} layers; got {count}")
    stride = n_layers // count
    return list(range(stride - 1, n_layers, stride))
