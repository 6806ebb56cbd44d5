"""Merge LoRA adapters into the base model (or re-save a freeze/full checkpoint) as a model that
runs without tuneforge: safetensors shards of export_size GB, the tokenizer with a chat template
that renders like the training template, and a generation_config that stops at its stop tokens.

Everything a user can get wrong is checked before weights load. export_dir is written over (as
LLaMA-Factory does: re-exporting after more training is the common case), but the weight files of
an earlier export are removed first, so shards of two exports never mix (transformers would load
a stale model.safetensors before a new shard index). Refused: exporting into the base model's or
an adapter's folder. Everything is written into a staging folder beside export_dir and moved in
when complete, so a failure leaves export_dir as it was.

After the safetensors: optional quantization (bitsandbytes, or calibrated autoround/gptq:
quantize_4bit.py), optional GGUF (gguf.py), the Ollama Modelfile (modelfile.py), then the load-back
check of what was written (verify.py).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.export.files import commit, readable_weights, staging, swap_weights
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
    quantization_method: str | None = None  # bnb, gptq, autoround
    gguf_type: str | None = None


@dataclass
class ExportResult:
    export_dir: Path
    dtype: str
    weight_files: list[str]
    chat_template: str  # one line: which chat template was saved
    eos_token_id: list[int]
    gguf_files: list[str] = field(default_factory=list)
    parity: list[Any] = field(default_factory=list)  # verify.Parity of each runtime loaded back


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
    method, gguf_type = check_formats(cfg)
    adapters = list(m.adapter_name_or_path or [])
    if m.quantization_bit is not None:  # a QLoRA training config reused for export
        raise ConfigError(f"{where}: quantization_bit: {m.quantization_bit} would load the base quantized, and adapters "
                          "cannot be merged into quantized weights; merge into the full-precision base: remove "
                          "quantization_bit (a QLoRA adapter merges into the unquantized model it was trained on; "
                          "export_quantization_bit quantizes the merged export)")
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
    return ExportPlan(out, base_path, adapters, dtype, device, e.export_quantization_bit, method, gguf_type)


def check_formats(cfg: RunConfig) -> tuple[str | None, str | None]:
    """(quantization method, GGUF type), each None when not asked for; every missing piece is refused
    here, before anything loads or is written (the llama.cpp converter is fetched now if need be)."""
    from tuneforge.export.quantize import check_quantization
    from tuneforge.export.quantize_4bit import CALIBRATED, check_calibrated, quantization_method

    e = cfg.export
    method = None
    if e.export_quantization_bit is not None:
        method = quantization_method(cfg)
        if method in CALIBRATED:
            check_calibrated(cfg, method)
        else:
            check_quantization(e.export_quantization_bit)
    gguf_type = None
    if e.export_format == "gguf" or e.export_gguf:
        from tuneforge.export.gguf import DEFAULT_TYPE, check_gguf_type
        from tuneforge.export.llama_cpp import converter_dir

        if method is not None:
            raise ConfigError("export_gguf converts the full-precision merged model; it cannot also take "
                              "export_quantization_bit (choose a quantized GGUF type such as q4_k_m instead)")
        gguf_type = check_gguf_type(e.export_gguf or DEFAULT_TYPE)
        converter_dir()
    return method, gguf_type


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


@dataclass
class Prepared:
    """What is known before the weights load: tokenizer, template, stop ids, chat template, calibration text."""

    tokenizer: Any
    bound: Any
    stop_ids: list[int]
    chosen: tuple[str | None, str]
    calibration: list[str] | None = None


def prepare(cfg: RunConfig, plan: ExportPlan) -> Prepared:
    from tuneforge.data.templates import template_for
    from tuneforge.export.chat_template import choose_chat_template
    from tuneforge.export.modelfile import check_modelfile
    from tuneforge.export.quantize_4bit import CALIBRATED, calibration_blocks, calibration_texts
    from tuneforge.model.load import load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    bound = template_for(cfg.data, tokenizer)
    check_modelfile(bound)
    ready = Prepared(tokenizer, bound, bound.stop_token_ids(), choose_chat_template(bound))
    if plan.quantization_method in CALIBRATED:
        e = cfg.export
        ready.calibration = calibration_blocks(calibration_texts(cfg, bound), tokenizer,
                                               e.export_quantization_nsamples, e.export_quantization_maxlen)
    return ready


def merged_model(cfg: RunConfig, plan: ExportPlan) -> Any:
    """The base model with the adapters merged in, in the export dtype, on the export device."""
    from tuneforge.model.adapters import load_adapters
    from tuneforge.model.load import Precision, load_model

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
    return model


def save_merged(model: Any, ready: Prepared, stage: Path, shard_bytes: int) -> tuple[list[int], str]:
    """Safetensors, generation_config stopping at the template's stop ids, tokenizer; -> (eos ids, which template)."""
    import torch

    gen = model.generation_config
    eos = generation_stop_ids(ready.stop_ids, gen.eos_token_id)
    gen.eos_token_id = eos if len(eos) > 1 else eos[0]
    if ready.tokenizer.pad_token_id is not None:
        gen.pad_token_id = ready.tokenizer.pad_token_id
    with torch.no_grad():
        model.save_pretrained(stage, max_shard_size=shard_bytes)
    readable_weights(stage)
    which = save_tokenizer(ready.tokenizer, ready.bound, stage, ready.chosen)
    note(f"chat template: {which}")
    return eos, which


def runtime_files(cfg: RunConfig, plan: ExportPlan, ready: Prepared, stage: Path, eos: list[int]) -> list[str]:
    """Quantized weights, GGUF files and the Modelfile, written into the staging folder; -> GGUF names."""
    from tuneforge.export.modelfile import write_modelfile

    shard_bytes = max(int(cfg.export.export_size * 10**9), 1)
    ggufs: list[str] = []
    if plan.quantization_method == "bnb":
        from tuneforge.export.quantize import quantize_export

        quantize_export(stage, plan.quantization_bit, plan.dtype, shard_bytes)
    elif plan.quantization_method is not None:
        from tuneforge.export.quantize_4bit import quantize_calibrated

        with tempfile.TemporaryDirectory(dir=stage.parent, prefix=f".{stage.name}-q") as tmp:
            written = quantize_calibrated(stage, Path(tmp), plan.quantization_method, plan.quantization_bit,
                                          ready.calibration or [], cfg.export.export_quantization_iters)
            swap_weights(stage, written)
    if plan.gguf_type is not None:
        from tuneforge.export.gguf import write_gguf, write_gguf_adapter

        ggufs.append(write_gguf(stage, plan.gguf_type).name)
        if len(plan.adapters) == 1 and Path(plan.base_path).is_dir():
            ggufs.append(write_gguf_adapter(Path(plan.adapters[0]), Path(plan.base_path),
                                            stage / "adapter-f32.gguf").name)
    write_modelfile(stage, ready.bound, ready.tokenizer, eos, f"./{ggufs[0]}" if ggufs else ".")
    from tuneforge.model.vision import load_image_processor

    images = load_image_processor(cfg.model)  # a vision model: the export loads with its image processor
    if images is not None:
        images.save_pretrained(stage)
    return ggufs


def export_model(cfg: RunConfig) -> ExportResult:
    """Merge, save, quantize/convert as `plan_export` checked, write the Modelfile, load back; says
    each step through `tuneforge.log`."""
    from tuneforge.export.verify import prompt_ids, transformers_greedy

    plan = plan_export(cfg)
    ready = prepare(cfg, plan)  # before the weights load: a problem here costs nothing
    model = merged_model(cfg, plan)
    prompts = prompt_ids(ready.bound, ready.tokenizer)
    reference = {p: transformers_greedy(model, ids, ready.stop_ids) for p, ids in prompts.items()} \
        if needs_reference(plan) else {}
    out = plan.export_dir
    shard_bytes = max(int(cfg.export.export_size * 10**9), 1)
    with staging(out) as stage:
        eos, which = save_merged(model, ready, stage, shard_bytes)
        del model
        ggufs = runtime_files(cfg, plan, ready, stage, eos)
    removed = commit(stage, out, also=TEMPLATE_FILES)
    if removed:
        note(f"export_dir {out} had an earlier export: replaced {len(removed)} file(s)")
    weights = sorted(p.name for p in out.glob("*.safetensors"))
    result = ExportResult(out, str(plan.dtype).removeprefix("torch."), weights, which, eos, ggufs)
    result.parity = load_back(plan, result, ready, prompts, reference)
    return result


def needs_reference(plan: ExportPlan) -> bool:
    from tuneforge.export.llama_cpp import has_library
    from tuneforge.export.quantize_4bit import CALIBRATED

    return plan.quantization_method in CALIBRATED or (plan.gguf_type is not None and has_library())


def load_back(plan: ExportPlan, result: ExportResult, ready: Prepared, prompts: dict[str, list[int]],
              reference: dict[str, list[int]]) -> list[Any]:
    """Load what was written with its runtime where installed and compare greedy answers (verify.py)."""
    from tuneforge.export.llama_cpp import has_library
    from tuneforge.export.quantize_4bit import CALIBRATED
    from tuneforge.export.verify import compare, llama_cpp_greedy, transformers_answers

    found = []
    if plan.quantization_method in CALIBRATED:
        answers = transformers_answers(result.export_dir, prompts, ready.stop_ids)
        found.append(compare(f"transformers ({plan.quantization_method} {plan.quantization_bit}-bit)", reference,
                             answers, ready.tokenizer))
    if plan.gguf_type is not None:
        if has_library():
            path = result.export_dir / result.gguf_files[0]
            answers = llama_cpp_greedy(path, prompts, ready.stop_ids)
            found.append(compare(f"llama.cpp ({path.name})", reference, answers, ready.tokenizer))
        else:
            note("load-back llama.cpp: skipped, llama-cpp-python is not installed (pip install 'tuneforge[gguf]')")
    return found
