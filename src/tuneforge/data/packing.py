"""`packing: true`: bin-pack samples into rows of at most cutoff_len tokens.

Every sample keeps its own position ids (restarting at 0), which is how the padding-free collator
and the attention kernel find the boundaries: packed samples never attend to each other
(LLaMA-Factory's `neat_packing` semantics; its plain `packing` lets them, we never do).

Best-fit decreasing: longest samples first, each into the fullest row it still fits, so rows end
up nearly full. Sample order inside the dataset is then shuffled by the Trainer's sampler as usual.
"""

from __future__ import annotations

import bisect
from typing import Any


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


def pack_dataset(dataset: Any, capacity: int) -> Any:
    """Dataset of single samples (input_ids, labels) -> dataset of packed rows with position_ids."""
    from datasets import Dataset

    ids_col = dataset["input_ids"]
    labels_col = dataset["labels"]
    rows: dict[str, list[Any]] = {"input_ids": [], "labels": [], "position_ids": []}
    for group in pack_lengths([len(ids) for ids in ids_col], capacity):
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in sorted(group):  # dataset order inside a row: deterministic and easy to inspect
            ids += ids_col[i]
            labels += labels_col[i]
            positions += range(len(ids_col[i]))
        rows["input_ids"].append(ids)
        rows["labels"].append(labels)
        rows["position_ids"].append(positions)
    return Dataset.from_dict(rows)
