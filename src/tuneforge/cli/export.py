"""`tuneforge export CONFIG [key=value ...]`: merge adapters (or re-save a freeze/full checkpoint) into
export_dir as safetensors shards + tokenizer + chat template + generation_config + an Ollama Modelfile;
optionally quantized (export_quantization_bit) or converted to GGUF (export_format: gguf, export_gguf=TYPE)."""

from __future__ import annotations

from pathlib import Path


def run_export(config_path: Path, overrides: list[str]):
    from tuneforge.cli.config import load_config
    from tuneforge.export.merge import export_model
    from tuneforge.log import note

    cfg = load_config(config_path, ["do_train=false", *overrides])
    result = export_model(cfg)
    shards = len([w for w in result.weight_files if w.startswith("model")])
    e = cfg.export
    kind = f"{result.dtype} weights" if e.export_quantization_bit is None else f"{e.export_quantization_bit}-bit weights"
    note(f"exported {kind} ({shards} safetensors file{'s' if shards != 1 else ''}, at most "
         f"{cfg.export.export_size:g} GB each), tokenizer and generation_config (stops at token ids "
         f"{result.eos_token_id}) to {result.export_dir}")
    runs = f"FROM ./{result.gguf_files[0]}" if result.gguf_files else "FROM the safetensors folder"
    note(f"Ollama: ollama create <name> -f {result.export_dir / 'Modelfile'} ({runs})")
    return result
