"""How a config would train, in the terms the memory model needs, and the checkpointing decision
`train` makes when the config leaves it open. Reads config.json only, never weights or data."""

from __future__ import annotations

import dataclasses
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.config.stages import facts
from tuneforge.model.attention import VARLEN, VARLEN_EAGER
from tuneforge.model.kernels import fused_loss_wanted, plan
from tuneforge.model.memory.quantized import Quantization
from tuneforge.model.memory.sharding import Sharding, world_from_env

DEFAULT_CARD_GIB = 80.0
# Kept free of what the estimate plans: other processes on the card, NCCL/cuBLAS workspaces that
# grow later, fragmentation beyond the modelled slack. 5% of the card, at least 1 GiB.
MARGIN_FRACTION = 0.05
MARGIN_MIN_BYTES = 2**30


def card_bytes(gpu_mem_gib: float | None = None) -> tuple[int, str]:
    """The card's memory: `gpu_mem_gib` if given, else the visible CUDA device's, else 80 GiB."""
    if gpu_mem_gib is not None:
        if gpu_mem_gib <= 0:
            raise ConfigError(f"--gpu-mem-gib must be positive, got {gpu_mem_gib}")
        return int(gpu_mem_gib * 2**30), "--gpu-mem-gib"
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return int(props.total_memory), props.name
    return int(DEFAULT_CARD_GIB * 2**30), "no GPU visible: assumed; set --gpu-mem-gib"


@dataclasses.dataclass(frozen=True)
class Budget:
    """What a run may plan to use on the card: its free memory minus a margin."""

    card: int
    free: int
    margin: int

    @property
    def usable(self) -> int:
        return max(0, self.free - self.margin)

    def describe(self) -> str:
        gib = 2**30
        return (f"{self.usable / gib:.1f} GiB usable ({self.free / gib:.1f} GiB free - {self.margin / gib:.1f} GiB "
                f"margin, {100 * MARGIN_FRACTION:.0f}% of the card, at least {MARGIN_MIN_BYTES / gib:.0f} GiB)")


def memory_budget(gpu_mem_gib: float | None = None) -> Budget:
    """`gpu_mem_gib` (a card planned for, all of it free), else the visible GPU's free memory now,
    else an 80 GiB card; less the margin."""
    card, _ = card_bytes(gpu_mem_gib)
    free = card
    if gpu_mem_gib is None:
        import torch

        if torch.cuda.is_available():
            free = int(torch.cuda.mem_get_info()[0])
    return Budget(card, free, max(MARGIN_MIN_BYTES, int(MARGIN_FRACTION * card)))


def run_settings(cfg: RunConfig, config: Any, tokens: int | None = None) -> dict[str, Any]:
    """How `train` would run this config on a CUDA GPU: model/kernels.py's plan, in the memory
    model's terms (its attention names, whether full logits exist, tokens per micro-batch)."""
    from tuneforge.model.fused_loss import supports_fused_config

    stage = cfg.method.stage
    fast = plan(cfg, "cuda", config)  # packages the GPU lacks here only add notes, which estimate ignores
    # the machine estimating need not have liger installed: trust the config that asks for it
    fast = dataclasses.replace(fast, liger=bool(fast.liger or cfg.model.enable_liger_kernel) and facts(stage).padding_free)
    if fast.attn_implementation in (VARLEN, "flash_attention_2"):
        attention = "varlen"
    elif fast.attn_implementation in ("eager", VARLEN_EAGER):  # per sample: at most the whole row's T x T
        attention = "eager"
    else:  # sdpa with a block-diagonal or padding mask: no flash kernel, k/v repeated per head
        attention = "sdpa_masked"
    fused = fused_loss_wanted(fast, cfg) and supports_fused_config(config)
    worst = cfg.train.per_device_train_batch_size * cfg.data.cutoff_len
    worst *= facts(stage).sequences  # dpo/rm: chosen + rejected; kto: the batch plus its KL batch
    optim = str(cfg.train.extra.get("optim", "adamw_torch_fused"))
    state = 2 if "8bit" in optim else 0 if optim == "sgd" else 8
    # autocast: accelerate enters it around the model's forward (the chunked loss runs inside it)
    return {"tokens": tokens or worst, "attention": attention, "liger": fast.liger, "fused_loss": fused,
            "autocast": True, "optimizer_state_bytes": state, "padding_free": fast.padding_free,
            "accumulation": cfg.train.gradient_accumulation_steps, "quantization": Quantization.of(cfg.model),
            "sharding": _sharding(cfg)}


def _sharding(cfg: RunConfig) -> Sharding:
    """The ranks and the ZeRO stage the run would have (model/memory/sharding.py)."""
    import torch

    from tuneforge.config.distributed import read_json_setting

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    ds = cfg.dist.deepspeed
    return Sharding.of(read_json_setting(ds, "deepspeed", cfg.source or "config") if ds is not None else None,
                       world_from_env(gpus))


def estimate_args(run: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of estimate_memory / choose_checkpointing from run_settings."""
    keys = ("tokens", "fused_loss", "attention", "autocast", "liger", "optimizer_state_bytes", "accumulation",
            "quantization", "sharding")
    return {**{k: run[k] for k in keys}, "dtype_bytes": 2}  # a CUDA run trains in bf16 (fp16 without bf16)


def worst_micro_batch(lengths: Any, batch_size: int, padding_free: bool) -> int:
    """Tokens of the largest micro-batch the data can form: the longest rows together (padded:
    every row padded to the longest). `lengths`: a list or a numpy array (data/packing.py's
    sample_lengths), sorted by numpy either way."""
    import numpy as np

    longest = np.sort(np.asarray(lengths, dtype=np.int64))[::-1][:batch_size]
    if not len(longest):
        return 0
    return int(longest.sum()) if padding_free else int(longest[0]) * min(batch_size, len(lengths))


def decide_checkpointing(cfg: RunConfig, tokens: int | None = None) -> tuple[bool, str]:
    """For `train` on a GPU when the config leaves checkpointing open: on only if the predicted
    peak of the largest micro-batch (`tokens`; default batch x cutoff_len) exceeds the card's free
    memory less the margin."""
    from tuneforge.model.load import load_model_config
    from tuneforge.model.memory.estimate import choose_checkpointing

    config = load_model_config(cfg.model)
    run = run_settings(cfg, config, tokens)
    return choose_checkpointing(config, cfg.method, card_bytes=memory_budget().usable, **estimate_args(run))

