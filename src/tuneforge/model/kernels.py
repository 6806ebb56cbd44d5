"""The fast path: which batching, attention kernel and loss a run uses, decided once and logged.

Defaults pick the fastest path that is correct on the hardware at hand; LLaMA-Factory's switches
(`flash_attn`, `enable_liger_kernel`, `packing`/`neat_packing`, `use_unsloth`) are honoured.

| piece     | choice                                                                      |
| --------- | --------------------------------------------------------------------------- |
| batching  | padding-free rows for sft/pt (data/collate.py); `packing: true` bin-packs   |
| attention | flash-attn varlen if installed, else PyTorch's varlen kernel (CUDA half),   |
|           | else per-sample SDPA (model/attention.py): samples never see each other     |
| loss      | Liger's fused linear+CE (+ RMSNorm/RoPE/SwiGLU) on CUDA when installed,     |
|           | else our chunked linear+CE (model/fused_loss.py); never full logits         |
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.config.stages import facts
from tuneforge.model.attention import choose_attention, needs_eager


@dataclass(frozen=True)
class FastPath:
    padding_free: bool
    packing: bool
    attn_implementation: str | None  # for from_pretrained; None = transformers' default
    attention: str                   # what the log says
    liger: bool
    fused_loss: bool = False         # our chunked loss; settled once the model is loaded (supports_fused_loss)
    notes: tuple[str, ...] = ()      # switches this machine cannot honour, and what is used instead

    def describe(self) -> str:
        batching = ("packed rows (samples isolated)" if self.packing else
                    "padding-free" if self.padding_free else "padded")
        loss = ("Liger fused linear+CE and kernels" if self.liger else
                "chunked linear+CE (no full logits)" if self.fused_loss else "standard (full logits)")
        return f"batches {batching}, attention {self.attention}, loss {loss}"


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def liger_supports(model_type: str | None) -> bool:
    """Liger patches only the architectures in its own map; for any other it logs and returns, and
    the run would silently compute full logits (so the chunked loss stays on instead)."""
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return model_type in MODEL_TYPE_TO_APPLY_LIGER_FN


def plan(cfg: RunConfig, device: str, model_config: Any = None) -> FastPath:
    """Everything that must be known before the weights load. `model_config` (config.json through
    transformers; None where unknown) tells which attention the architecture needs and whether
    Liger can patch it."""
    stage = cfg.method.stage
    packing = cfg.data.packing or cfg.data.neat_packing
    rows = facts(stage).padding_free
    if packing and not rows:
        raise ConfigError(f"packing: true applies to stage sft or pt, not {stage}")
    padding_free = rows and (cfg.data.padding_free or packing)
    attention = choose_attention(cfg.model.flash_attn, device, padding_free, needs_eager(model_config))
    notes = [attention.note] if attention.note else []
    liger = _liger(cfg, device, model_config, notes)
    if rows and cfg.model.fused_loss and not liger and zero3(cfg):
        notes.append("deepspeed ZeRO-3 shards lm_head's weight: the chunked loss is off (full logits)")
    return FastPath(padding_free=padding_free, packing=packing, attn_implementation=attention.implementation,
                    attention=attention.label, liger=liger, notes=tuple(notes))


def _liger(cfg: RunConfig, device: str, model_config: Any, notes: list[str]) -> bool:
    """enable_liger_kernel: true / false / None (auto: on for sft/pt on CUDA when installed and the
    architecture is one Liger patches). What cannot be honoured adds a note."""
    asked = cfg.model.enable_liger_kernel
    if asked is False or not (asked or facts(cfg.method.stage).padding_free):
        return False
    if not (device == "cuda" and liger_installed()):
        if asked:
            why = "a CUDA GPU" if device != "cuda" else "the liger-kernel package (pip install liger-kernel)"
            notes.append(f"enable_liger_kernel: true needs {why}; using tuneforge's chunked loss instead")
        return False
    model_type = getattr(model_config, "model_type", None)
    if model_config is not None and not liger_supports(model_type):
        if asked:
            notes.append(f"enable_liger_kernel: Liger has no kernels for {model_type}; "
                         "using tuneforge's chunked loss instead")
        return False
    return True


def fused_loss_wanted(fast: FastPath, cfg: RunConfig) -> bool:
    """The chunked loss applies (sft/pt, not switched off, Liger not doing it, the head's weight
    whole on every rank) if the model allows it."""
    return facts(cfg.method.stage).padding_free and cfg.model.fused_loss and not fast.liger and not zero3(cfg)


def zero3(cfg: RunConfig) -> bool:
    """DeepSpeed ZeRO-3 (`deepspeed:` a JSON file or mapping with zero_optimization.stage 3): each rank
    holds a shard of every weight and gathers it in the module's forward hook, so the chunked loss,
    which reads lm_head's weight without calling lm_head, would see an empty shard."""
    from tuneforge.config.distributed import zero_stage

    return zero_stage(cfg.dist) == 3


def settle_loss(fast: FastPath, cfg: RunConfig, model: Any) -> FastPath:
    """After loading: the plan with the chunked loss on when Liger is off and the architecture allows it."""
    from tuneforge.model.fused_loss import supports_fused_loss

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return dataclasses.replace(fast, fused_loss=fused_loss_wanted(fast, cfg) and supports_fused_loss(base))
