"""Batch collators: padded, and padding-free (our default for sft/pt).

Padding-free: the samples of a micro-batch are laid end to end in one row of shape [1, T] with
position ids restarting at 0 for every sample, plus the sample boundaries (`cu_seq_lens_*`, the
names transformers' attention kernels read). The attention kernel keeps samples isolated (see
model/attention.py); no padding token is ever computed.

Written here rather than using transformers' DataCollatorWithFlattening because a row may already
hold several samples (`packing: true`, data/packing.py): boundaries come from the row's own
restarting `position_ids`, which that collator ignores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneforge.data.labels import IGNORE_INDEX


def padded_collator(tokenizer: Any, device: str) -> Any:
    """Pads input_ids with pad and labels with -100 (padding never trains)."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX,
                                  pad_to_multiple_of=8 if device == "cuda" else None)


def _segments(feature: dict[str, Any]) -> list[int]:
    """Lengths of the samples in one dataset row: one sample, or several when packed."""
    positions = feature.get("position_ids")
    if positions is None:
        return [len(feature["input_ids"])]
    starts = [i for i, p in enumerate(positions) if p == 0] or [0]
    if starts[0] != 0:
        starts.insert(0, 0)
    ends = starts[1:] + [len(positions)]
    return [e - s for s, e in zip(starts, ends)]


@dataclass
class PaddingFreeCollator:
    """[{input_ids, labels[, position_ids]}, ...] -> one [1, T] row with per-sample positions.

    The first label of every sample becomes -100: in a padded batch position 0 of a sample is never
    predicted (nothing precedes it); here the token before it belongs to the previous sample, and
    predicting across that boundary would leak. With this, the loss terms, and so the counts the
    Trainer normalises by (`num_items_in_batch`), are exactly those of the padded batch.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        input_ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        lengths: list[int] = []
        for feature in features:
            ids = list(feature["input_ids"])
            labs = list(feature.get("labels", ids))
            offset = 0
            for length in _segments(feature):
                if length == 0:
                    continue
                input_ids += ids[offset:offset + length]
                labels += [IGNORE_INDEX] + labs[offset + 1:offset + length]
                positions += range(length)
                lengths.append(length)
                offset += length
        if not lengths:
            raise ValueError("padding-free collator got a batch with no tokens")
        cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
        longest = max(lengths)
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
            "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
            "max_length_q": longest, "max_length_k": longest,
        }


@dataclass
class VisionCollator:
    """Padded batches of samples with pictures: the text padded by `text` (the padded collator), the batch's
    pictures made into the model's pixel inputs (pixel_values, image_grid_thw) by the image processor, the videos'
    likewise, and `mm_token_type_ids` (1 on image tokens, 2 on video tokens), which Qwen-VL's forward needs for its
    3-D rope positions."""

    text: Any
    images: Any  # data/media.py's ImagePlan
    image_token_id: int
    video_token_id: int = -1  # videos: pixel_values_videos, video_grid_thw (data/video.py); type 2 (-1: none)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        pictures, clips = [], []
        for feature in features:
            sizes = feature.get("image_hw") or []
            pictures += [(pixels, sizes[2 * i], sizes[2 * i + 1])
                         for i, pixels in enumerate(feature.get("images") or [])]
            thw, fps = feature.get("video_thw") or [], feature.get("video_fps") or []
            clips += [(pixels, *thw[3 * i:3 * i + 3], fps[i]) for i, pixels in enumerate(feature.get("videos") or [])]
        batch = self.text([{key: feature[key] for key in ("input_ids", "labels") if key in feature}
                           for feature in features])
        if self.images.token_types:
            batch["mm_token_type_ids"] = ((batch["input_ids"] == self.image_token_id).int()
                                          + 2 * (batch["input_ids"] == self.video_token_id).int())
        if pictures:
            batch.update(self.images.pixel_inputs(pictures))
        if clips:
            from tuneforge.data.video import video_inputs

            batch.update(video_inputs(self.images, clips))
        return batch


def _samples(features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dataset rows -> one feature per sample, a packed row cut where its positions restart. A row's other
    columns (its pictures) stay with its first sample: pictures become pixel inputs in batch order either way,
    and the model gives them to its image tokens in that order."""
    out: list[dict[str, Any]] = []
    for feature in features:
        rest = {key: value for key, value in feature.items() if key not in ("input_ids", "labels", "position_ids")}
        ids = list(feature["input_ids"])
        labels = list(feature.get("labels", ids))
        offset = 0
        for length in _segments(feature):
            if length:
                out.append({"input_ids": ids[offset:offset + length], "labels": labels[offset:offset + length],
                            **(rest if offset == 0 else {})})
            offset += length
    return out


@dataclass
class VisionRowCollator:
    """Samples with pictures -> one padding-free [1, T] row (as PaddingFreeCollator's), taken from the padded batch
    `padded` (VisionCollator) makes of the same samples: the same pixel inputs (every picture in order) and
    mm_token_type_ids, the padding removed, the first label of every sample -100.

    Positions restart at 0 for every sample. For Qwen-VL (`rope_index`: the model's own get_rope_index,
    model/mrope.py) they are [4, 1, T]: those text positions first (transformers' Qwen-VL text models take a
    4-row position_ids as text positions + 3-D ones and hand the text row to attention) and under them the 3-D
    positions the model computes for the padded batch, sample by sample. No cu_seq_lens: Qwen-VL and LLaVA pass
    text kwargs on to their vision tower, whose own varlen kwargs they collide with, so the attention
    (model/attention.py) finds the samples from the restarting text positions."""

    padded: VisionCollator
    rope_index: Any = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = dict(self.padded(_samples(features)))
        real = batch.pop("attention_mask").bool()
        input_ids, labels = batch.pop("input_ids"), batch.pop("labels")
        lengths = real.sum(1)
        flat_labels = labels[real]
        flat_labels[torch.cumsum(lengths, 0) - lengths] = IGNORE_INDEX  # nothing before a sample predicts it
        text = torch.cat([torch.arange(int(n)) for n in lengths])[None]
        row = {"input_ids": input_ids[real][None], "labels": flat_labels[None], "position_ids": text}
        if self.rope_index is not None:  # from what the padded batch holds: grids, token types (and video timing)
            spatial = self.rope_index(input_ids=input_ids, attention_mask=real.long(), **batch)
            row["position_ids"] = torch.cat([text, spatial[:, real]])[:, None]
        if "mm_token_type_ids" in batch:
            row["mm_token_type_ids"] = batch.pop("mm_token_type_ids")[real][None]
        return {**batch, **row}  # the pixel inputs as they are
