"""The tokenized cache's key, computed without reading the records.

It covers what the encoded data depends on: the source files' content, each dataset's entry in
dataset_info.json, the template, the tokenizer's vocabulary and every setting that changes which
records are kept or how they are encoded. A file's content digest is remembered by its size,
mtime and inode, so a cached start reads no data at all; the digest is trusted only for a file that
had not changed for a while when it was hashed (an edit within the file system's timestamp
granularity would otherwise look unchanged), so edited data is never served stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from tuneforge import __version__
from tuneforge.atomic import write_atomic
from tuneforge.config.schema import DataConfig
from tuneforge.data.registry import DatasetSpec
from tuneforge.data.templates import BoundTemplate

# A digest is reused only if the file's mtime is this much older than the moment hashing began.
SETTLED_NS = 2 * 10**9
# DataConfig fields that change which records are kept or how they are encoded.
ENCODING_KEYS = ("cutoff_len", "train_on_prompt", "mask_history", "max_samples", "mix_strategy", "interleave_probs",
                 "identity_name", "identity_author", "bad_records")


def _template_key(template: BoundTemplate) -> str:
    tpl = template.template
    if template.name == "auto":
        desc: Any = template.tokenizer.chat_template
    else:
        desc = {f.name: getattr(tpl, f.name) for f in dataclasses.fields(tpl) if not callable(getattr(tpl, f.name))}
        desc["callables"] = [getattr(getattr(tpl, f.name), "__qualname__", None) for f in dataclasses.fields(tpl)
                             if callable(getattr(tpl, f.name))]
    parts = [desc, template.default_system, template.enable_thinking]
    if template.images is not None:  # the pictures' size rule (text templates keep their old keys)
        parts.append(template.images.key())
    return json.dumps(parts, sort_keys=True, default=str)


def _tokenizer_key(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return (hashlib.sha256(body.encode()).hexdigest() + str(tokenizer.bos_token) + str(tokenizer.eos_token)
            + str(getattr(tokenizer, "split_special_tokens", False)))


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: Path, memo_dir: Path) -> str:
    """The SHA-256 of a file's bytes, remembered in `memo_dir` by (size, mtime, inode)."""
    path = path.resolve()
    stat = path.stat()
    identity = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
    memo = memo_dir / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".json")
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
        if known["identity"] == identity and stat.st_mtime_ns < known["hashed_at"] - SETTLED_NS:
            return str(known["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    began = time.time_ns()
    digest = _hash_file(path)
    memo_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(memo, json.dumps({"path": str(path), "identity": identity, "digest": digest, "hashed_at": began}))
    return digest


def source_key(spec: DatasetSpec, files: list[Path], memo_dir: Path) -> list[Any]:
    """What one dataset's records come from: its entry, and its files' content (hub datasets: the
    files `datasets` cached for them, by name, size and mtime)."""
    entry = dataclasses.asdict(spec)
    entry.pop("info_file")
    return [entry, [[str(p), file_digest(p, memo_dir)] for p in files]]


def hub_files(dataset: Any) -> list[Any]:
    """A hub dataset's identity: the Arrow files `datasets` cached it in."""
    out = []
    for item in getattr(dataset, "cache_files", None) or []:
        path = Path(item["filename"])
        stat = path.stat()
        out.append([str(path), stat.st_size, stat.st_mtime_ns])
    return out


def fingerprint(sources: list[Any], template: BoundTemplate, stage: str, data: DataConfig, seed: int | None) -> str:
    """The cache key of datasets whose `source_key`s are `sources`, encoded for `stage` by `template`.
    `seed`: None when the records kept do not depend on it (no num_samples draws, no interleave_probs),
    so another seed reuses the cache."""
    h = hashlib.sha256()
    settings = {key: getattr(data, key) for key in ENCODING_KEYS}
    for part in (__version__, stage, _template_key(template), _tokenizer_key(template.tokenizer),
                 json.dumps([settings, seed, sources], sort_keys=True, default=str)):
        h.update(part.encode())
    return h.hexdigest()[:24]


def process_tag() -> str:
    """A name part no other process writing the cache at the same time uses."""
    return f"{os.getpid()}-{time.time_ns()}"
