"""The optimizers of the method extras, each from the library that implements it:

- GaLore / APOLLO: transformers' own `optim: galore_adamw[_layerwise]` / `apollo_adamw[_layerwise]`
  (galore-torch / apollo-torch), set as TrainingArguments by `optimizer_arguments`;
- LoRA+: peft's `create_loraplus_optimizer`; BAdam: the badam package's `BlockOptimizer` (layer mode)
  and `BlockOptimizerRatio` (ratio mode); Muon: `torch.optim.Muon` with AdamW (train/muon.py);
  Adam-mini: the adam-mini package. These are built in the Trainer's
  `create_optimizer` hook (`ExtraOptimizers`, put in front of every stage's trainer by
  stages/run.py), from the method settings the run attached to the model (`attach_method`).
"""

from __future__ import annotations

from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import MethodConfig
from tuneforge.train.param_groups import adam_kwargs, decay_groups

# The attribute of the trained model that carries its MethodConfig to the Trainer's create_optimizer.
METHOD_ATTR = "tuneforge_method"
# `galore_target: all` / `apollo_target: all`: every linear layer except the output head (transformers
# matches a string target with re.fullmatch against each module's full name).
ALL_BUT_HEAD = r"^(?!(.*\.)?(lm_head|embed_out)$).+$"
# The packages each extra needs: pip name, import name (pyproject's `extras` extra installs them all).
PACKAGES = {"use_galore": ("galore-torch", "galore_torch"), "use_apollo": ("apollo-torch", "apollo_torch"),
            "use_badam": ("badam", "badam"), "use_adam_mini": ("adam-mini", "adam_mini")}


def check_ready(method: MethodConfig, max_grad_norm: float) -> None:
    """Before anything loads: one line naming the package an extra needs when it is missing; a note when a
    layer-wise optimizer drops a setting the user made."""
    import importlib.util

    from tuneforge.log import note

    for key, (pip_name, module) in PACKAGES.items():
        if getattr(method, key) and importlib.util.find_spec(module) is None:
            raise ConfigError(f"{key} needs the {pip_name} package: pip install 'tuneforge[extras]' "
                              f"(or pip install {pip_name})")
    layerwise = (method.use_galore and method.galore_layerwise) or (method.use_apollo and method.apollo_layerwise)
    if layerwise and max_grad_norm:
        note(f"layer-wise {'GaLore' if method.use_galore else 'APOLLO'} steps each weight inside the backward pass, "
             f"before the whole gradient exists: max_grad_norm {max_grad_norm} is not applied")


def optimizer_arguments(method: MethodConfig) -> dict[str, Any]:
    """TrainingArguments for GaLore / APOLLO (transformers builds those optimizers itself); {} otherwise."""
    if method.use_galore:
        name, targets = "galore_adamw", method.galore_target
        args = dict(rank=method.galore_rank, update_proj_gap=method.galore_update_interval,
                    scale=method.galore_scale, proj_type=method.galore_proj_type)
        layerwise = method.galore_layerwise
    elif method.use_apollo:
        name, targets = "apollo_adamw", method.apollo_target
        args = dict(rank=method.apollo_rank, update_proj_gap=method.apollo_update_interval,
                    scale=method.apollo_scale, proj=method.apollo_proj, proj_type=method.apollo_proj_type,
                    scale_type=method.apollo_scale_type)
        layerwise = method.apollo_layerwise
    else:
        return {}
    return {"optim": name + ("_layerwise" if layerwise else ""),
            "optim_target_modules": ALL_BUT_HEAD if targets == ["all"] else target_pattern(targets),
            "optim_args": ",".join(f"{key}={value}" for key, value in args.items())}


def target_pattern(names: list[str]) -> str:
    """galore_target / apollo_target names (mlp, self_attn, q_proj, ...) as one regex over module names: the named
    modules and everything inside them. transformers keeps the linear layers among the matches; as a regex, the
    containers it skips raise no warning."""
    import re

    return rf"^(?:.*\.)?(?:{'|'.join(re.escape(n) for n in names)})(?:\..+)?$"


def attach_method(model: Any, method: MethodConfig) -> Any:
    """Let the Trainer's create_optimizer see the run's method settings (a stage's trainer is built from
    the model and TrainingArguments alone)."""
    object.__setattr__(model, METHOD_ATTR, method)
    return model


class ExtraOptimizers:
    """Trainer mixin: create_optimizer builds the extra's optimizer (LoRA+, BAdam, Muon, Adam-mini);
    with none of them set, or GaLore/APOLLO (transformers' own), the Trainer's default runs. With
    pissa_convert, the PiSSA adapter is also saved converted for the original base (train/pissa.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        method = getattr(self.model, METHOD_ATTR, None)
        if method is not None and method.pissa_init and method.pissa_convert:
            from tuneforge.train.pissa import PissaConvert

            self.add_callback(PissaConvert())
        if method is not None and method.use_badam:
            from types import MethodType

            from badam import BAdamCallback, clip_grad_norm_old_version

            # as the badam package asks: its callback (checkpointing that lets frozen blocks skip, ZeRO-3); ratio
            # mode's gradients are sparse tensors, which only its clipping function handles
            self.add_callback(BAdamCallback)
            if method.badam_mode == "ratio":
                self.accelerator.clip_grad_norm_ = MethodType(clip_grad_norm_old_version, self.accelerator)

    def create_optimizer(self, model: Any = None) -> Any:
        method = getattr(self.model, METHOD_ATTR, None)
        if self.optimizer is None and method is not None:
            self.optimizer = build_optimizer(method, model or self.model, self.args)
        return super().create_optimizer(model) if self.optimizer is None else self.optimizer


def with_extra_optimizers(trainer_class: type) -> type:
    if issubclass(trainer_class, ExtraOptimizers):
        return trainer_class
    return type(trainer_class.__name__, (ExtraOptimizers, trainer_class),
                {"__module__": trainer_class.__module__, "__qualname__": trainer_class.__qualname__})


def build_optimizer(method: MethodConfig, model: Any, args: Any) -> Any | None:
    """The extra's optimizer for `model`, or None for the Trainer's own."""
    if method.loraplus_lr_ratio is not None:
        return loraplus(method, model, args)
    if method.use_badam:
        return badam(method, model, args)
    if method.use_muon:
        from tuneforge.train.muon import muon

        return muon(model, args)
    if method.use_adam_mini:
        return adam_mini(model, args)
    return None


def loraplus(method: MethodConfig, model: Any, args: Any) -> Any:
    from peft.optimizers import create_loraplus_optimizer
    from transformers import Trainer

    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    kwargs = {k: v for k, v in kwargs.items() if k != "lr"}
    return create_loraplus_optimizer(model, optimizer_cls, lr=args.learning_rate,
                                     loraplus_lr_ratio=method.loraplus_lr_ratio,
                                     loraplus_lr_embedding=method.loraplus_lr_embedding,
                                     loraplus_weight_decay=args.weight_decay, **kwargs)


def badam(method: MethodConfig, model: Any, args: Any) -> Any:
    import warnings

    import torch

    named = [(n, p) for n, p in model.named_parameters()]
    # -1: never switch (badam itself would switch every step: any step count is a multiple of -1)
    switch = method.badam_switch_interval if method.badam_switch_interval > 0 else 2**62
    with warnings.catch_warnings():  # BAdam's advice to load fp16/bf16 weights: ours are fp32 master weights
        warnings.simplefilter("ignore")
        if method.badam_mode == "layer":
            from badam import BlockOptimizer

            base = torch.optim.AdamW(decay_groups(named, args.weight_decay), **adam_kwargs(args))
            return BlockOptimizer(base_optimizer=base, named_parameters_list=named, block_prefix_list=None,
                                  switch_block_every=switch,
                                  start_block=method.badam_start_block, switch_mode=method.badam_switch_mode,
                                  verbose=method.badam_verbose)
        from badam import BlockOptimizerRatio

        # with tied embeddings there is no lm_head parameter, and badam would freeze one it cannot find (a crash);
        # the shared weight is frozen as the embedding already
        tied = not any("lm_head" in name for name, _ in named)

        return BlockOptimizerRatio(param_groups=decay_groups(named, args.weight_decay), named_parameters_list=named,
                                   switch_every=switch, update_ratio=method.badam_update_ratio,
                                   mask_mode=method.badam_mask_mode, verbose=method.badam_verbose,
                                   include_embedding=False, include_lm_head=tied, **adam_kwargs(args))


def adam_mini(model: Any, args: Any) -> Any:
    from adam_mini import Adam_mini

    config = model.config
    return Adam_mini(named_parameters=model.named_parameters(), weight_decay=args.weight_decay,
                     model_sharding=False, dim=config.hidden_size, n_heads=config.num_attention_heads,
                     n_kv_heads=getattr(config, "num_key_value_heads", None), verbose=False, **adam_kwargs(args))
