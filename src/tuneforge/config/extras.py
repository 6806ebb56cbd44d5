"""The method extras LLaMA-Factory's tutorials teach, with its key names and defaults: LoRA+, PiSSA,
GaLore, APOLLO, BAdam, Muon, Adam-mini and LLaMA Pro. `MethodConfig` (config/schema.py) inherits these
fields, so they are read as `cfg.method.<key>` like every other method key; `check_extras` refuses the
combinations that cannot work, in one line each, before anything loads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class MethodExtras(BaseModel):
    # LoRA+ (peft.optimizers.create_loraplus_optimizer)
    loraplus_lr_ratio: float | None = Field(None, gt=0,
        description="LoRA+: the B matrices learn this many times faster than learning_rate (e.g. 16; empty: off)")
    loraplus_lr_embedding: float = Field(1e-6, gt=0,
        description="LoRA+: the learning rate of LoRA adapters on embedding layers (e.g. in an adapter loaded with "
                    "adapter_name_or_path; lora_target adds adapters to linear layers only)")
    # PiSSA (peft's init_lora_weights="pissa" / "pissa_niter_N")
    pissa_init: bool = Field(False,
        description="PiSSA: start the adapter from the weights' principal singular vectors (converges faster)")
    pissa_iter: int = Field(16, ge=-1,
        description="PiSSA: fast-SVD iterations (-1: exact SVD, slower)")
    pissa_convert: bool = Field(False,
        description="PiSSA: also save the adapter converted to plain LoRA for the original base (pissa_converted/)")
    # GaLore (transformers' optim galore_adamw[_layerwise], galore-torch)
    use_galore: bool = Field(False, description="GaLore: full fine-tuning with low-rank projected optimizer states")
    galore_target: list[str] = Field(["all"],
        description="GaLore: linear modules it projects (all, or names such as q_proj,v_proj)")
    galore_rank: int = Field(16, gt=0, description="GaLore: the rank of the projected gradients")
    galore_update_interval: int = Field(200, gt=0, description="GaLore: steps between projection updates")
    galore_scale: float = Field(2.0, gt=0, description="GaLore: scale of the projected update")
    galore_proj_type: Literal["std", "reverse_std", "right", "left", "full"] = Field("std",
        description="GaLore: projection type")
    galore_layerwise: bool = Field(False,
        description="GaLore: update each weight during the backward pass (less memory; no gradient accumulation)")
    # APOLLO (transformers' optim apollo_adamw[_layerwise], apollo-torch)
    use_apollo: bool = Field(False, description="APOLLO: full fine-tuning with SGD-like optimizer memory")
    apollo_target: list[str] = Field(["all"],
        description="APOLLO: linear modules it applies to (all, or names such as q_proj,v_proj)")
    apollo_rank: int = Field(16, gt=0, description="APOLLO: the rank of the projected gradients")
    apollo_update_interval: int = Field(200, gt=0, description="APOLLO: steps between projection updates")
    apollo_scale: float = Field(32.0, gt=0, description="APOLLO: gradient scaling factor")
    apollo_proj: Literal["svd", "random"] = Field("random", description="APOLLO: projection (svd or random)")
    apollo_proj_type: Literal["std", "right", "left"] = Field("std", description="APOLLO: projection type")
    apollo_scale_type: Literal["channel", "tensor"] = Field("channel",
        description="APOLLO: scaling per channel or per tensor")
    apollo_layerwise: bool = Field(False,
        description="APOLLO: update each weight during the backward pass (less memory; no gradient accumulation)")
    apollo_scale_front: bool = Field(False,
        description="APOLLO: the norm-growth limiter before the scaling (transformers' APOLLO AdamW has none: only "
                    "false is accepted)")
    # BAdam (the badam package: BlockOptimizer / BlockOptimizerRatio)
    use_badam: bool = Field(False, description="BAdam: full fine-tuning that updates one block of layers at a time")
    badam_mode: Literal["layer", "ratio"] = Field("layer",
        description="BAdam: layer (one decoder layer at a time) or ratio (a share of every weight)")
    badam_start_block: int | None = Field(None, ge=0, description="BAdam layer mode: the block to start with")
    badam_switch_mode: Literal["ascending", "descending", "random", "fixed"] = Field("ascending",
        description="BAdam layer mode: the order in which blocks take turns")
    badam_switch_interval: int = Field(50, ge=-1,
        description="BAdam: optimizer steps before switching to the next block (-1: never switch)")
    badam_update_ratio: float = Field(0.05, gt=0, le=1, description="BAdam ratio mode: the share of weights updated")
    badam_mask_mode: Literal["adjacent", "scatter"] = Field("adjacent",
        description="BAdam ratio mode: updated weights side by side (adjacent) or spread out (scatter)")
    badam_verbose: int = Field(0, ge=0, le=2,
        description="BAdam: 0 quiet, 1 print the block switched to, 2 also its trainable parameters")
    # Other optimizers
    use_muon: bool = Field(False,
        description="Muon (torch.optim.Muon) for the 2-D hidden weight matrices, AdamW for the rest")
    use_adam_mini: bool = Field(False, description="Adam-mini: AdamW with one learning rate per block (less memory)")
    # LLaMA Pro (blocks added by `tuneforge expand`)
    use_llama_pro: bool = Field(False,
        description="LLaMA Pro: train only the blocks `tuneforge expand` added (freeze_trainable_layers of them)")
    # galore_target / apollo_target are split like lora_target by MethodConfig's own validator


OPTIMIZER_SWITCHES = ("use_galore", "use_apollo", "use_badam", "use_muon", "use_adam_mini")


def check_extras(method: Any, train: Any, pref: Any) -> str | None:
    """What is wrong with the extras in this config (one line), or None. `method` is a MethodConfig,
    `train` a TrainConfig, `pref` a PreferenceConfig."""
    on = [key for key in OPTIMIZER_SWITCHES if getattr(method, key)]
    if method.loraplus_lr_ratio is not None:
        on.append("loraplus_lr_ratio")
    if len(on) > 1:
        return f"{' and '.join(on)} each choose the optimizer; set only one of them"
    if on and method.stage == "ppo":
        return (f"{on[0]}: stage ppo runs its own update loop with AdamW; the optimizer extras work with stages sft, "
                "pt, rm, dpo, kto, grpo and rloo")
    lora_only = [k for k in ("loraplus_lr_ratio", "pissa_init") if getattr(method, k) not in (None, False)]
    if lora_only and method.finetuning_type != "lora":
        return f"{lora_only[0]} is for finetuning_type: lora (not {method.finetuning_type})"
    reference = method.stage in ("kto", "ppo", "grpo", "rloo") or (method.stage == "dpo" and
                                                                  pref.pref_loss not in ("orpo", "simpo"))
    if method.pissa_init and reference and method.finetuning_type == "lora" and pref.ref_model is None:
        return (f"pissa_init: stage {method.stage} uses the model with its adapter switched off as the reference, "
                "which under PiSSA is the residual of the base, not the base; use plain LoRA (or set ref_model)")
    full_only = [k for k in ("use_galore", "use_apollo", "use_badam") if getattr(method, k)]
    if full_only and method.finetuning_type == "lora":
        return (f"{full_only[0]} trains full weights with a memory-saving optimizer; use finetuning_type: full "
                "(or freeze), not lora")
    if method.use_badam and method.finetuning_type != "full":
        return "use_badam picks the trained block itself; it needs finetuning_type: full"
    if method.use_llama_pro and method.finetuning_type == "full":
        return "use_llama_pro trains only the expanded blocks; use finetuning_type: freeze (or lora)"
    if method.use_badam and method.badam_switch_interval == 0:
        return "badam_switch_interval must be a number of steps (or -1: never switch), not 0"
    if method.use_apollo and method.apollo_scale_front:
        return ("apollo_scale_front: the norm-growth limiter exists only in apollo-torch's quantized APOLLO, not in "
                "the APOLLO AdamW that transformers' apollo_adamw builds; remove it (false)")
    layerwise = [k for k in ("galore_layerwise", "apollo_layerwise") if getattr(method, k)
                 and getattr(method, "use_" + k.split("_")[0])]
    if layerwise and train.gradient_accumulation_steps > 1:
        return (f"{layerwise[0]} updates each weight as soon as its gradient is computed, so it cannot accumulate "
                f"gradients over {train.gradient_accumulation_steps} micro-batches; set gradient_accumulation_steps: 1 "
                "or turn the layer-wise mode off")
    return None
