"""Load tokenizer and model: local folder or hub id, dtype and attention chosen for the hardware."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import QUANTIZATION_BITS, ModelConfig, TrainConfig
from tuneforge.model.hub import hub_endpoint, modelscope_folder, use_modelscope
from tuneforge.model.tiny import TINY_NAME
from tuneforge.model.tiny_vl import TINY_VL_NAMES


def resolve_model_path(name: str) -> str:
    """tuneforge/tiny -> the built tiny model; local paths must exist; anything else is a hub id."""
    if name == TINY_NAME:
        from tuneforge.model import tiny

        return str(tiny.ensure())
    if name in TINY_VL_NAMES:
        from tuneforge.model import tiny_vl

        return str(tiny_vl.ensure(TINY_VL_NAMES[name]))
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
    if use_modelscope():  # LLaMA-Factory's switch: hub ids are ModelScope's
        return modelscope_folder(name)
    return name


def _hub_error(what: str, name: str, exc: Exception, key: str) -> ConfigError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if Path(name).expanduser().is_dir():
        return ConfigError(f"cannot load {what} from {key} '{name}' ({first})")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return ConfigError(f"cannot load {what} '{name}': not a local folder, and the hub "
                       f"{'is switched off (HF_HUB_OFFLINE=1)' if offline else f'at {hub_endpoint()} did not answer'} "
                       f"({first})")


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


def load_model_config(m: ModelConfig, say: bool = False) -> Any:
    """The model's config.json through transformers (no weights): what the fast-path plan and the
    memory estimate need to know about the architecture before anything heavy loads. `rope_scaling`
    is applied to it (model/rope.py; `say`: print what it did)."""
    from transformers import AutoConfig

    from tuneforge.log import note
    from tuneforge.model.rope import scale_rope

    path = resolve_model_path(m.model_name_or_path)
    with hub_errors("model config", m.model_name_or_path):
        config = AutoConfig.from_pretrained(path, trust_remote_code=m.trust_remote_code, revision=m.model_revision,
                                            cache_dir=m.cache_dir)
    line = scale_rope(config, m.rope_scaling, m.model_max_length)
    if say and line:
        note(line)
    return config


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
        if t.bf16 or t.fp16 or t.pure_bf16:
            note = (f"no GPU: {'pure_bf16' if t.pure_bf16 else 'bf16' if t.bf16 else 'fp16'} is off, computing in "
                    "fp32 (half precision on a CPU is several times slower)")
        return Precision(torch.float32, False, False, device, note)
    bf16_ok = device == "cuda" and torch.cuda.is_bf16_supported()
    if t.pure_bf16:  # LLaMA-Factory's pure_bf16: bf16 weights (and optimizer states), no autocast
        if not bf16_ok:
            raise ConfigError(f"pure_bf16 needs a GPU with bfloat16 ({device} has none); use fp16: true")
        return Precision(torch.bfloat16, False, False, device)
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


# quantization_method -> (the package it needs, the extra that installs it)
QUANTIZERS = {"bnb": ("bitsandbytes", "tuneforge[bnb]"), "hqq": ("hqq", "tuneforge[hqq]")}


def check_quantization(m: ModelConfig) -> None:
    """quantization_bit's method installed (one line naming the extra when not) and the bit width it
    offers. Cheap (no import of the package): `train` calls it before anything loads."""
    import importlib.util

    if m.quantization_bit is None:
        return
    package, extra = QUANTIZERS[m.quantization_method]
    bits = QUANTIZATION_BITS[m.quantization_method]
    if m.quantization_bit not in bits:
        raise ConfigError(f"quantization_bit {m.quantization_bit} is not offered by quantization_method "
                          f"{m.quantization_method} (it quantizes to {' or '.join(map(str, bits))} bits)")
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"quantization_bit: {m.quantization_bit} (quantization_method: {m.quantization_method}) needs "
                          f"{package}: pip install '{extra}'; or remove quantization_bit to load the model unquantized")


def quantization_config(m: ModelConfig, compute_dtype: Any) -> Any | None:
    """transformers' config that quantizes the base while it loads (QLoRA), or None. 4-bit bnb uses
    `quantization_type` (nf4/fp4) and `double_quantization`, and computes in `compute_dtype` (the
    run's half dtype on a GPU, fp32 on a CPU)."""
    if m.quantization_bit is None:
        return None
    check_quantization(m)
    try:
        if m.quantization_method == "hqq":
            from transformers import HqqConfig

            return HqqConfig(nbits=m.quantization_bit, group_size=64)
        import bitsandbytes  # noqa: F401  # type: ignore[import-not-found]
        from transformers import BitsAndBytesConfig
    except ImportError as exc:  # installed but broken (a wheel for another platform, a missing library)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"quantization_method {m.quantization_method} is installed but does not load ({first}); "
                          f"reinstall it: pip install --force-reinstall '{QUANTIZERS[m.quantization_method][1]}'") from None
    if m.quantization_bit == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=m.quantization_type,
                              bnb_4bit_use_double_quant=m.double_quantization, bnb_4bit_compute_dtype=compute_dtype)


def quantized_device_map(device: str) -> dict[str, Any]:
    """Where a quantized model loads: whole, on this process's GPU (LOCAL_RANK under a launcher), or the CPU.
    Quantized weights cannot be moved after loading, so the device is chosen here, not by the Trainer."""
    if device == "cuda":
        return {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return {"": device}


class _OnceFilter:
    """Lets one record of a message through, then drops its repeats."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.seen = prefix, False

    def filter(self, record: Any) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        seen, self.seen = self.seen, True
        return not seen


def quiet_int8_casts() -> None:
    """bitsandbytes logs "MatMul8bitLt: inputs will be cast ... to float16" on every forward of every 8-bit
    layer whose input is not fp16 (bf16 and fp32 runs: all of them); said once, it is enough."""
    import logging

    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _OnceFilter) for f in logger.filters):
        logger.addFilter(_OnceFilter("MatMul8bitLt: inputs will be cast"))


def load_model(m: ModelConfig, precision: Precision, *, attn_implementation: str | None,
               for_training: bool = True) -> Any:
    """The causal LM of `m` in `precision.load_dtype`, quantized when `quantization_bit` is set.
    `attn_implementation` is the run's one attention decision (model/attention.py's choose_attention;
    None = transformers' default); `flash_attn` is never read here, so no loader can ask for a kernel
    this machine lacks."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(m.model_name_or_path)
    kwargs: dict[str, Any] = dict(dtype=precision.load_dtype, trust_remote_code=m.trust_remote_code,
                                  revision=m.model_revision, cache_dir=m.cache_dir)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if m.rope_scaling:  # the scaled RoPE parameters travel in the config
        kwargs["config"] = load_model_config(m, say=True)
    quantization = quantization_config(m, precision.load_dtype)
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map=quantized_device_map(precision.device))
        quiet_int8_casts()
    model_class = AutoModelForCausalLM
    if getattr(load_model_config(m), "vision_config", None) is not None:  # vision-language (model/vision.py)
        from transformers import AutoModelForImageTextToText as model_class  # type: ignore[no-redef]
    with hub_errors("model", m.model_name_or_path):
        model = model_class.from_pretrained(path, **kwargs)
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
