"""`tuneforge export CONFIG [key=value ...]`: merge adapters (or re-save a freeze/full checkpoint) into
export_dir as safetensors shards + tokenizer + chat template + generation_config."""

from __future__ import annotations

from pathlib import Path


def run_export(config_path: Path, overrides: list[str]) -> None:
    from tuneforge.log import note
    from tuneforge.cli.config import load_config
    from tuneforge.export.merge import export_model

    cfg = load_config(config_path, ["do_train=false", *overrides])
    result = export_model(cfg)
    shards = len([w for w in result.weight_files if w.startswith("model")])
    note(f"exported {result.dtype} weights ({shards} safetensors file{'s' if shards != 1 else ''}, at most "
         f"{cfg.export.export_size:g} GB each), tokenizer and generation_config (stops at token ids "
         f"{result.eos_token_id}) to {result.export_dir}")
