"""Load tokenizer and model: local folder or hub id, dtype and attention chosen for the hardware."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import ModelConfig, TrainConfig
from tuneforge.model.tiny import TINY_NAME


def resolve_model_path(name: str) -> str:
    """tuneforge/tiny -> the built tiny model; local paths must exist; anything else is a hub id."""
    if name == TINY_NAME:
        from tuneforge.model import tiny

        return str(tiny.ensure())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"model_name_or_path '{name}' is a file; give the model's folder")
        if not (path / "config.json").is_file():
            raise ConfigError(f"model_name_or_path '{name}' is a folder without config.json, not a saved model; "
                              "give the folder save_pretrained wrote, or a hub id")
        return str(path)
    looks_local = name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or os.sep == "\\" and "\\" in name
    if looks_local:
        raise ConfigError(f"model_name_or_path '{name}' does not exist (no folder at {path.resolve()})")
    return name


def _hub_error(what: str, name: str, exc: Exception, key: str) -> ConfigError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if Path(name).expanduser().is_dir():
        return ConfigError(f"cannot load {what} from {key} '{name}' ({first})")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return ConfigError(f"cannot load {what} '{name}': not a local folder, and the hub "
                       f"{'is switched off (HF_HUB_OFFLINE=1)' if offline else 'did not answer'} ({first})")


@contextmanager
def hub_errors(what: str, name: str, key: str = "model_name_or_path") -> Iterator[None]:
    """from_pretrained failures a user can cause (a folder that is not that kind of model, a hub id
    that cannot be fetched, code the model ships) -> one ConfigError line naming `key`."""
    try:
        yield
    except (ValueError, ImportError, OSError) as exc:
        if "trust_remote_code" in str(exc):
            raise ConfigError(f"model '{name}' ships its own code; set trust_remote_code: true if you trust it") from None
        raise _hub_error(what, name, exc, key) from None


def load_model_config(m: ModelConfig) -> Any:
    """The model's config.json through transformers (no weights): what the fast-path plan and the
    memory estimate need to know about the architecture before anything heavy loads."""
    from transformers import AutoConfig

    path = resolve_model_path(m.model_name_or_path)
    with hub_errors("model config", m.model_name_or_path):
        return AutoConfig.from_pretrained(path, trust_remote_code=m.trust_remote_code, revision=m.model_revision,
                                          cache_dir=m.cache_dir)


def load_tokenizer(cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model_path(cfg.model_name_or_path)
    with hub_errors("tokenizer", cfg.model_name_or_path):
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code,
                                                  use_fast=cfg.use_fast_tokenizer, revision=cfg.model_revision,
                                                  cache_dir=cfg.cache_dir, split_special_tokens=cfg.split_special_tokens)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.model_max_length:
        tokenizer.model_max_length = cfg.model_max_length
    return tokenizer


@dataclass
class Precision:
    """What the weights are loaded in and what Trainer's mixed precision flags are."""

    load_dtype: Any  # torch.dtype
    bf16: bool
    fp16: bool
    device: str  # "cuda", "mps" or "cpu"
    note: str = ""


def choose_precision(t: TrainConfig, finetuning_type: str) -> Precision:
    import torch

    if torch.cuda.is_available() and not t.use_cpu:
        device = "cuda"
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() and not t.use_cpu:
        device = "mps"
    else:
        device = "cpu"
    if device == "cpu":
        note = ""
        if t.bf16 or t.fp16:
            note = (f"no GPU: {'bf16' if t.bf16 else 'fp16'} is off, computing in fp32 "
                    "(half precision on a CPU is several times slower)")
        return Precision(torch.float32, False, False, device, note)
    bf16_ok = device == "cuda" and torch.cuda.is_bf16_supported()
    bf16, fp16 = t.bf16, t.fp16
    if not bf16 and not fp16:  # auto
        bf16, fp16 = bf16_ok, not bf16_ok
    if bf16 and not bf16_ok:
        bf16, fp16 = False, True
    half = torch.bfloat16 if bf16 else torch.float16
    # Adapters and frozen layers train on half-precision base weights; full fine-tuning keeps fp32
    # master weights and lets autocast do the half-precision math.
    load = half if finetuning_type in ("lora", "freeze") else torch.float32
    return Precision(load, bf16, fp16, device)


def load_model(m: ModelConfig, precision: Precision, *, attn_implementation: str | None,
               for_training: bool = True) -> Any:
    """The causal LM of `m` in `precision.load_dtype`. `attn_implementation` is the run's one attention
    decision (model/attention.py's choose_attention; None = transformers' default); `flash_attn`
    is never read here, so no loader can ask for a kernel this machine lacks."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(m.model_name_or_path)
    kwargs: dict[str, Any] = dict(dtype=precision.load_dtype, trust_remote_code=m.trust_remote_code,
                                  revision=m.model_revision, cache_dir=m.cache_dir)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    with hub_errors("model", m.model_name_or_path):
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if for_training:
        model.config.use_cache = False
    return model


def inference_precision(m: ModelConfig, device: str) -> Precision:
    """What chat, predict and the API load the weights in: `infer_dtype` (LLaMA-Factory's key), where
    `auto` is bf16 on a GPU that has it, else fp16 on a GPU, fp32 on a CPU (half precision on a CPU is
    several times slower and gains nothing)."""
    import torch

    names = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if m.infer_dtype != "auto":
        dtype = names[m.infer_dtype]
    elif device == "cpu":
        dtype = torch.float32
    else:
        dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    return Precision(dtype, False, False, device)
