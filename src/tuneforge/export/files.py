"""The files of an export folder: the staging folder an export is written into, the move into
export_dir (what an earlier export left is removed first, so shards, GGUF files or templates of two
exports never mix) and their permissions."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Files an earlier export may have left that the new one would not overwrite.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "quantization_config.json")
WEIGHT_PATTERNS = ("model-*-of-*.safetensors", "pytorch_model-*-of-*.bin")
RUNTIME_PATTERNS = ("*.gguf", "Modelfile")
# What a quantizer writes that replaces the merged model's files (the tokenizer and generation_config stay ours).
QUANTIZED_FILES = ("config.json", "quantization_config.json")


def remove_weights(export_dir: Path, also: tuple[str, ...] = (), patterns: tuple[str, ...] = ()) -> list[str]:
    """Delete the weight files (and the files named in `also` or matching `patterns`) of an earlier export;
    return their names."""
    removed = []
    candidates = [export_dir / name for name in (*WEIGHT_FILES, *also)]
    for pattern in (*WEIGHT_PATTERNS, *patterns):
        candidates += sorted(export_dir.glob(pattern))
    for path in candidates:
        if path.is_file():
            path.unlink()
            removed.append(path.name)
    return removed


def readable_weights(export_dir: Path) -> None:
    """safetensors writes its files owner-only (0600); give them the usual umask permissions like
    every other file here, so a server running as another user (a vLLM container) can read them."""
    mask = os.umask(0)
    os.umask(mask)
    for path in export_dir.glob("*.safetensors"):
        os.chmod(path, 0o666 & ~mask)


@contextmanager
def staging(export_dir: Path) -> Iterator[Path]:
    """A fresh folder beside export_dir to write the export into; removed when the block fails."""
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = export_dir.parent / f".{export_dir.name}.tuneforge-partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def commit(stage: Path, export_dir: Path, also: tuple[str, ...] = ()) -> list[str]:
    """Move the complete export from `stage` into export_dir; -> names of earlier files removed."""
    if not export_dir.exists():
        os.replace(stage, export_dir)
        return []
    removed = remove_weights(export_dir, also=also, patterns=RUNTIME_PATTERNS)
    for path in stage.iterdir():
        target = export_dir / path.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(path, target)
    stage.rmdir()
    return removed


def swap_weights(stage: Path, written: Path) -> None:
    """Replace the merged weights in `stage` by a quantizer's output in `written`."""
    remove_weights(stage)
    for path in written.iterdir():
        if path.suffix == ".safetensors" or path.name.endswith(".safetensors.index.json") \
                or path.name in QUANTIZED_FILES:
            shutil.move(str(path), stage / path.name)
    readable_weights(stage)
