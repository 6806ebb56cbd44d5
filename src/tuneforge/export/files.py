"""The weight files of an export folder: what an earlier export left (removed before a new one is
written, so shards of two exports never mix) and their permissions."""

from __future__ import annotations

import os
from pathlib import Path

# Files an earlier export may have left that the new one would not overwrite.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
WEIGHT_PATTERNS = ("model-*-of-*.safetensors", "pytorch_model-*-of-*.bin")


def remove_weights(export_dir: Path, also: tuple[str, ...] = ()) -> list[str]:
    """Delete the weight files (and the files named in `also`) of an earlier export; return their names."""
    removed = []
    candidates = [export_dir / name for name in (*WEIGHT_FILES, *also)]
    for pattern in WEIGHT_PATTERNS:
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
