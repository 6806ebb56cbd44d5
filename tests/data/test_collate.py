"""Padding-free rows and packing: boundaries, labels and token counts a user's loss depends on."""

from __future__ import annotations

import random

import pytest

from tuneforge.data.collate import PaddingFreeCollator
from tuneforge.data.packing import pack_dataset, pack_lengths


def test_rows_restart_positions_and_never_train_across_a_boundary():
    batch = PaddingFreeCollator()([
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
        {"input_ids": [8, 9], "labels": [8, 9]},  # pt-style: every token is a label
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    # the first token of each sample is never a target: nothing of its own sample precedes it
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5] and batch["max_length_q"] == 3
    assert "attention_mask" not in batch  # no padding, so no mask to build


def test_packed_rows_are_split_back_into_their_samples():
    packed = {"input_ids": [1, 2, 3, 4, 5], "labels": [1, 2, 3, 4, 5], "position_ids": [0, 1, 0, 1, 2]}
    batch = PaddingFreeCollator()([packed, {"input_ids": [6, 7], "labels": [-100, 7]}])
    assert batch["cu_seq_lens_q"].tolist() == [0, 2, 5, 7]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[-100, 2, -100, 4, 5, -100, 7]]


def test_packing_fills_rows_without_exceeding_cutoff_and_keeps_every_sample_once():
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(500)]
    bins = pack_lengths(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    lower_bound = -(-sum(lengths) // 128)
    assert len(bins) <= lower_bound * 1.05 + 1  # best-fit decreasing is near optimal


def test_pack_dataset_keeps_each_samples_tokens_and_labels():
    from datasets import Dataset

    samples = {"input_ids": [[1, 2, 3], [4, 5], [6, 7, 8, 9]], "labels": [[-100, 2, 3], [4, 5], [-100, -100, 8, 9]]}
    packed = pack_dataset(Dataset.from_dict(samples), capacity=6)
    assert len(packed) == 2
    rows = [PaddingFreeCollator()([row]) for row in packed]
    seen = []
    for row in rows:
        cu = row["cu_seq_lens_q"].tolist()
        ids = row["input_ids"][0].tolist()
        seen += [ids[s:e] for s, e in zip(cu[:-1], cu[1:])]
    assert sorted(seen) == sorted(samples["input_ids"])


def test_an_empty_batch_is_an_error():
    with pytest.raises(ValueError):
        PaddingFreeCollator()([{"input_ids": [], "labels": []}])
