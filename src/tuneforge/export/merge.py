"""Merge LoRA adapters into the base model (or re-save a freeze/full checkpoint) as a model that
runs without tuneforge: safetensors shards of export_size GB, the tokenizer with a chat template
that renders like the training template, and a generation_config that stops at its stop tokens.

Everything a user can get wrong is checked before weights load. export_dir is written over (as
LLaMA-Factory does: re-exporting after more training is the common case), but the weight files of
an earlier export are removed first, so shards of two exports never mix (transformers would load
a stale model.safetensors before a new shard index). Refused: exporting into the base model's or
an adapter's folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.export.files import readable_weights, remove_weights
from tuneforge.log import note

DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32", "fp16": "float16", "bf16": "bfloat16",
          "fp32": "float32", "half": "float16", "float": "float32"}
# A template kept from an earlier export must not outlive it (template: auto may save none).
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


@dataclass
class ExportPlan:
    """What was checked before any weights load."""

    export_dir: Path
    base_path: str
    adapters: list[str]
    dtype: Any  # torch.dtype of the exported weights
    device: str
    quantization_bit: int | None = None


@dataclass
class ExportResult:
    export_dir: Path
    dtype: str
    weight_files: list[str]
    chat_template: str  # one line: which chat template was saved
    eos_token_id: list[int]


def _same_folder(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def _checkpoint_dtype(config: Any) -> Any:
    """The dtype the checkpoint was saved in (config.json `dtype` / `torch_dtype`); fp32 when unsaid."""
    import torch

    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and value.removeprefix("torch.") in DTYPES:
        return getattr(torch, DTYPES[value.removeprefix("torch.")])
    return torch.float32


def plan_export(cfg: RunConfig) -> ExportPlan:
    """Check the config, paths and base model config; load no weights."""
    import torch

    from tuneforge.export.quantize import check_quantization
    from tuneforge.model.adapters import check_adapter_dir
    from tuneforge.model.load import hub_errors, resolve_model_path

    e, m = cfg.export, cfg.model
    where = cfg.source or "config"
    if not e.export_dir:
        raise ConfigError(f"{where}: 'export_dir' is required for export (the folder the merged model is written to)")
    if e.export_legacy_format:
        raise ConfigError(f"{where}: export_legacy_format: true asks for pytorch .bin files; tuneforge writes "
                          "safetensors only (transformers, vLLM and llama.cpp all read them); set "
                          "export_legacy_format: false")
    if e.export_hub_model_id:
        raise ConfigError(f"{where}: export_hub_model_id is not supported yet; export, then upload the folder "
                          "with `hf upload <repo id> <export_dir>`")
    if e.export_quantization_bit is not None:
        check_quantization(e.export_quantization_bit)
    adapters = list(m.adapter_name_or_path or [])
    if adapters and cfg.method.finetuning_type != "lora":
        raise ConfigError(f"{where}: adapter_name_or_path needs finetuning_type: lora (a freeze or full checkpoint "
                          "is exported by naming its folder in model_name_or_path)")
    for path in adapters:
        check_adapter_dir(path)
    base_path = resolve_model_path(m.model_name_or_path)

    out = Path(e.export_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"export_dir '{out}' is a file")
    for source, what in [(base_path, "model_name_or_path"), *((a, "adapter_name_or_path") for a in adapters)]:
        if Path(source).expanduser().is_dir() and _same_folder(source, out):
            raise ConfigError(f"export_dir '{out}' is the {what} folder; export to a folder of its own")
    if (out / "adapter_config.json").is_file():
        raise ConfigError(f"export_dir '{out}' holds a LoRA adapter (adapter_config.json), and loaders would take "
                          "the export for an adapter; export to a folder of its own")

    from transformers import AutoConfig

    with hub_errors("model config", m.model_name_or_path):
        config = AutoConfig.from_pretrained(base_path, trust_remote_code=m.trust_remote_code,
                                            revision=m.model_revision, cache_dir=m.cache_dir)
    quantized = getattr(config, "quantization_config", None)
    if quantized:
        method = quantized.get("quant_method", "?") if isinstance(quantized, dict) else getattr(
            quantized, "quant_method", "?")
        raise ConfigError(f"model '{m.model_name_or_path}' is quantized ({method}); adapters cannot be merged into "
                          "quantized weights. Export from the full-precision model (the one the quantized "
                          "checkpoint was made from); a LoRA trained on it (QLoRA) merges there")

    dtype = _checkpoint_dtype(config) if e.export_dtype == "auto" else getattr(torch, e.export_dtype)
    device = "cuda" if e.export_device == "auto" and torch.cuda.is_available() else "cpu"
    return ExportPlan(out, base_path, adapters, dtype, device, e.export_quantization_bit)


def generation_stop_ids(stop_ids: list[int], existing: Any) -> list[int]:
    """The template's stop ids first, then any eos the base model's generation_config already had."""
    ids = list(stop_ids)
    extra = existing if isinstance(existing, (list, tuple)) else [existing]
    ids += [i for i in extra if isinstance(i, int) and i not in ids]
    return ids


def save_tokenizer(tokenizer: Any, bound: Any, export_dir: Path, chosen: tuple[str | None, str] | None = None) -> str:
    """Save the tokenizer with a chat template that renders like `bound` (`chosen`: a result of
    choose_chat_template), eos set to the template's first stop word. Returns which chat template."""
    from tuneforge.export.chat_template import choose_chat_template, stop_settings

    chat_template, which = chosen or choose_chat_template(bound)
    stops = stop_settings(bound)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    if stops["eos_token"] and stops["eos_token"] != tokenizer.eos_token:
        note(f"tokenizer eos_token {tokenizer.eos_token!r} -> {stops['eos_token']!r} (template "
             f"'{bound.name}' ends answers with it)")
        tokenizer.eos_token = stops["eos_token"]
    tokenizer.save_pretrained(export_dir)
    return which


def export_model(cfg: RunConfig) -> ExportResult:
    """Merge, save and (optionally) quantize as `plan_export` checked; says each step through `tuneforge.log`."""
    import torch

    from tuneforge.data.templates import template_for
    from tuneforge.export.chat_template import choose_chat_template
    from tuneforge.model.adapters import load_adapters
    from tuneforge.model.load import Precision, load_model, load_tokenizer

    plan = plan_export(cfg)
    tokenizer = load_tokenizer(cfg.model)
    bound = template_for(cfg.data, tokenizer)
    stop_ids = bound.stop_token_ids()
    chosen = choose_chat_template(bound)  # before the weights load: a problem here costs nothing
    dtype_name = str(plan.dtype).removeprefix("torch.")
    if cfg.export.export_device == "auto" and plan.device == "cpu":
        note("export_device auto: no GPU visible, merging on the CPU")

    # merging runs no attention: transformers' default implementation whatever flash_attn says
    model = load_model(cfg.model, Precision(plan.dtype, False, False, plan.device), attn_implementation=None,
                       for_training=False)
    if plan.device != "cpu":
        model = model.to(plan.device)
    if plan.adapters:
        model = load_adapters(model, plan.adapters, trainable_last=False).merge_and_unload()
        note(f"merged {len(plan.adapters)} adapter(s) into {cfg.model.model_name_or_path}: {', '.join(plan.adapters)}")
    else:
        note(f"no adapter_name_or_path: exporting {cfg.model.model_name_or_path} as it is "
             f"({cfg.method.finetuning_type} checkpoint or base model)")
    model = model.to(plan.dtype).eval()
    model.config.use_cache = True

    gen = model.generation_config
    eos = generation_stop_ids(stop_ids, gen.eos_token_id)
    gen.eos_token_id = eos if len(eos) > 1 else eos[0]
    if tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id

    out = plan.export_dir
    out.mkdir(parents=True, exist_ok=True)
    removed = remove_weights(out, also=TEMPLATE_FILES)
    if removed:
        note(f"export_dir {out} had an earlier export: replaced {len(removed)} file(s)")
    shard_bytes = max(int(cfg.export.export_size * 10**9), 1)
    with torch.no_grad():
        model.save_pretrained(out, max_shard_size=shard_bytes)
    readable_weights(out)
    which = save_tokenizer(tokenizer, bound, out, chosen)
    note(f"chat template: {which}")
    del model
    if plan.quantization_bit is not None:
        from tuneforge.export.quantize import quantize_export

        quantize_export(out, plan.quantization_bit, plan.dtype, shard_bytes)
    weights = sorted(p.name for p in out.glob("*.safetensors"))
    return ExportResult(out, dtype_name, weights, which, eos)
