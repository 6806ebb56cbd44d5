"""`packing: true`: bin-pack samples into rows of at most cutoff_len tokens.

Every sample keeps its own position ids (restarting at 0), which is how the padding-free collator
and the attention kernel find the boundaries: packed samples never attend to each other
(LLaMA-Factory's `neat_packing` semantics; its plain `packing` lets them, we never do).

Best-fit decreasing: longest samples first, each into the fullest row it still fits, so rows end
up nearly full. Sample order inside the dataset is then shuffled by the Trainer's sampler as usual.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

PACKING_VERSION = 1  # part of the packed cache's key: raise it when the packed layout changes


def pack_lengths(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins whose sums stay <= capacity (best-fit decreasing)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining capacity, bin index), kept sorted
    for i in order:
        size = min(lengths[i], capacity)
        at = bisect.bisect_left(free, (size, -1))
        if at < len(free):
            room, b = free.pop(at)
            bins[b].append(i)
            room -= size
        else:
            bins.append([i])
            b, room = len(bins) - 1, capacity - size
        if room > 0:
            bisect.insort(free, (room, b))
    return bins


def sample_lengths(dataset: Any, column: str = "input_ids") -> Any:
    """Every sample's token count as a numpy array, computed by Arrow from the column's list offsets (the
    ids never become Python lists); None for a stream, which has no length."""
    import numpy as np
    import pyarrow.compute as pc
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        return None
    parts = [pc.list_value_length(batch[column]).to_numpy(zero_copy_only=False)
             for batch in dataset.select_columns([column]).with_format("arrow").iter(batch_size=1 << 16)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def _packed_folder(dataset: Any, capacity: int) -> Path | None:
    """Where the packed rows of a dataset that lives in files are cached (None for one in memory): keyed by
    its files (data and indices) and the row capacity, so a cached start does not pack again."""
    from tuneforge.data.dataset import cache_root

    files = sorted(item["filename"] for item in dataset.cache_files)
    if not files:
        return None
    stats = [[name, os.stat(name).st_size, os.stat(name).st_mtime_ns] for name in files]
    key = hashlib.sha256(json.dumps([stats, len(dataset), capacity, PACKING_VERSION]).encode()).hexdigest()[:24]
    return cache_root() / "datasets" / f"packed-{key}"


def joined_columns(dataset: Any) -> dict[str, Any]:
    """A vision dataset's per-sample list columns besides the tokens (its pictures, their sizes) -> their Arrow
    types. A packed row joins its samples' lists in sample order: the order the collator makes their pixel
    inputs in and the model gives them to the image tokens in."""
    from datasets import List

    return {name: feature for name, feature in dataset.features.items()
            if name not in ("input_ids", "labels", "position_ids") and isinstance(feature, List)}


def _pack_rows(batch: dict[str, list], source: Any, joined: tuple[str, ...] = ()) -> dict[str, list]:
    """A batch of bins (dataset indices) -> their packed rows, members in dataset order."""
    groups = [sorted(members) for members in batch["members"]]
    rows = source[[i for group in groups for i in group]]
    out: dict[str, list] = {name: [] for name in ("input_ids", "labels", "position_ids", *joined)}
    at = 0
    for group in groups:
        row: dict[str, list] = {name: [] for name in out}
        for k in range(at, at + len(group)):
            for name in ("input_ids", "labels", *joined):
                row[name] += rows[name][k]
            row["position_ids"] += range(len(rows["input_ids"][k]))
        at += len(group)
        for name, values in row.items():
            out[name].append(values)
    return out


def pack_dataset(dataset: Any, capacity: int) -> Any:
    """Dataset of single samples (input_ids, labels[, pictures]) -> dataset of packed rows with position_ids. The rows
    are built by a batch map (Arrow in, Arrow out) and, for a dataset that lives in files, cached."""
    from datasets import Dataset, Features, List, Value

    from tuneforge.data.dataset import META, load_encoded

    folder = _packed_folder(dataset, capacity)
    if folder is not None and (folder / META).is_file():
        return load_encoded(folder)[0]
    bins = Dataset.from_dict({"members": pack_lengths(sample_lengths(dataset).tolist(), capacity)})
    ids = List(Value("int32"))
    joined = joined_columns(dataset)
    kwargs: dict[str, Any] = dict(batched=True, batch_size=256, fn_kwargs={"source": dataset, "joined": tuple(joined)},
                                  remove_columns=["members"],
                                  features=Features(input_ids=ids, labels=ids, position_ids=ids, **joined))
    if folder is None:
        return bins.map(_pack_rows, **kwargs)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        packed = bins.map(_pack_rows, cache_file_name=str(tmp / "data.arrow"), load_from_cache_file=False, **kwargs)
        del packed
        (tmp / META).write_text(json.dumps({"files": ["data.arrow"]}), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_encoded(folder)[0]
