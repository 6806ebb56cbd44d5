"""Supervised samples with images: each picture's single image token (what the template rendered for its
<image>) repeated once per image token the picture costs, as the family's processor does; image tokens
never train; and truncation never cuts into a picture.

Truncation: a sample longer than cutoff_len is shortened by `encode_supervised`'s rule, with the stretch cut
out of a prompt slid off the pictures (text only), and kept if every image token survived; a sample that
cannot be shortened without cutting a picture is dropped and counted (the model would otherwise get pixel
features for tokens that are no longer there: "Image features and image tokens do not match"). A
cutoff_len smaller than one picture's tokens is one error line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.data.encode.supervised import cut_prompt, encode_supervised
from tuneforge.data.encode.tokenize import TurnIds
from tuneforge.data.labels import IGNORE_INDEX
from tuneforge.data.media import Picture


@dataclass
class VisionSample:
    input_ids: list[int]
    labels: list[int]
    full_len: int


def expand_images(turns: list[TurnIds], token_id: int, counts: list[int], where: str) -> list[TurnIds]:
    """Every piece's k-th image token (in conversation order) repeated counts[k] times."""
    found = sum(piece.count(token_id) for turn in turns for piece in (turn.prompt, turn.answer, turn.suffix))
    if found != len(counts):  # the text itself held the model's image token
        raise DataError(f"has {found} image tokens after rendering for {len(counts)} images (does the text contain "
                        "the model's own image token?)", source=where)
    pending = iter(counts)

    def grow(piece: list[int]) -> list[int]:
        out: list[int] = []
        for tid in piece:
            out += [tid] * next(pending) if tid == token_id else [tid]
        return out

    return [TurnIds(grow(t.prompt), grow(t.answer), grow(t.suffix)) for t in turns]


def cut_around(ids: list[int], keep: int, protected: set[int]) -> list[int]:
    """`cut_prompt` (the middle of the prompt removed, head and tail kept) with the removed stretch slid to
    the nearest place that holds no `protected` (image) token; `cut_prompt` itself when there is none."""
    if keep >= len(ids):
        return ids
    remove, head = len(ids) - keep, keep // 2
    blocked = [0]
    for tid in ids:
        blocked.append(blocked[-1] + (tid in protected))
    # the first token (the conversation's start) and the last (the assistant header's end) always stay
    for start in sorted(range(1, len(ids) - remove), key=lambda s: abs(s - head)):
        if blocked[start + remove] == blocked[start]:
            return ids[:start] + ids[start + remove:]
    return cut_prompt(ids, keep)


def encode_vision(turns: list[TurnIds], pictures: list[Picture], token_id: int, cutoff_len: int, where: str, *,
                  train_on_prompt: bool = False, mask_history: bool = False,
                  protected: set[int] | None = None) -> VisionSample | None:
    """-> the sample, or None when nothing trainable fits or the cut would go through a picture. `protected`:
    the tokens a cut must not remove (the image token, and the markers around it)."""
    protected = protected or {token_id}
    counts = [p.tokens for p in pictures]
    for picture in pictures:
        if picture.tokens >= cutoff_len:
            raise DataError(f"an image of {picture.width}x{picture.height} pixels costs {picture.tokens} tokens, "
                            f"which leaves no room in cutoff_len {cutoff_len}; raise cutoff_len or lower "
                            "image_max_pixels", source=where)
    turns = expand_images(turns, token_id, counts, where)
    full = sum(len(t.prompt) + len(t.answer) + len(t.suffix) for t in turns)
    encoded = encode_supervised(turns, cutoff_len, train_on_prompt=train_on_prompt, mask_history=mask_history,
                                cut=lambda ids, keep: cut_around(ids, keep, protected))
    if encoded is None:
        return None
    ids, labels = encoded
    if ids.count(token_id) != sum(counts):
        return None
    labels = [IGNORE_INDEX if tid == token_id else label for tid, label in zip(ids, labels)]
    return VisionSample(ids, labels, full)


def image_token_id(tokenizer: Any, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(tid, int) or tid == tokenizer.unk_token_id:
        raise DataError(f"the tokenizer has no {token} token; a vision template needs the vision model's own tokenizer")
    return tid


def vision_encoder(template: Any, data: Any) -> Any:
    """The supervised batch encoder of a vision template: one tokenizer call per batch (as for text), the
    batch's pictures read and resized in a thread pool."""
    from tuneforge.data.encode.tokenize import tokenize_turns_batch
    from tuneforge.data.example import Example

    plan = template.images
    token_id = image_token_id(template.tokenizer, template.vision.image_token)
    protected = set(template.tokenizer(template.vision.image, add_special_tokens=False)["input_ids"])

    def encode(batch: dict[str, list]) -> dict[str, list]:
        examples = [Example.from_dict(dict(zip(batch, values))) for values in zip(*batch.values())]
        for example in examples:
            if example.videos:
                raise DataError("has videos, but videos in the data are not supported yet (images are)",
                                source=example.source)
        pictures = plan.pictures([(path, e.source) for e in examples for path in e.images])
        conversations = tokenize_turns_batch(template.tokenizer, [template.render(e) for e in examples])
        out: dict[str, list] = {key: [] for key in ("input_ids", "labels", "full_len", "images", "image_hw", "source")}
        at = 0
        for example, turns in zip(examples, conversations):
            own, at = pictures[at:at + len(example.images)], at + len(example.images)
            sample = encode_vision(turns, own, token_id, data.cutoff_len, example.source,
                                   train_on_prompt=data.train_on_prompt, mask_history=data.mask_history,
                                   protected=protected)
            if sample is None:
                continue
            out["input_ids"].append(sample.input_ids)
            out["labels"].append(sample.labels)
            out["full_len"].append(sample.full_len)
            out["images"].append([p.pixels for p in own])
            out["image_hw"].append([side for p in own for side in (p.height, p.width)])
            out["source"].append(example.source)
        return out

    return encode


def vision_collator(template: Any, text_collator: Any) -> Any:
    """The batch collator for a vision template's samples (data/collate.py's VisionCollator)."""
    from tuneforge.data.collate import VisionCollator

    token_id = image_token_id(template.tokenizer, template.vision.image_token)
    return VisionCollator(text_collator, template.images, token_id)


def prompt_with_images(template: Any, text: str, pictures: list[Picture]) -> list[int]:
    """A rendered generation prompt's ids with each picture's image token repeated (chat, predict, the API)."""
    token_id = image_token_id(template.tokenizer, template.vision.image_token)
    ids = template.tokenizer(text, add_special_tokens=False)["input_ids"]
    return expand_images([TurnIds(ids, [], [])], token_id, [p.tokens for p in pictures], "the prompt")[0].prompt


def image_report(template: Any, dataset: Any) -> list[str]:
    """`data check`'s lines about the pictures of an encoded vision dataset: how many, their processed sizes and
    the image tokens each costs."""
    import statistics

    sizes = [(row[i], row[i + 1]) for row in dataset["image_hw"] for i in range(0, len(row), 2)]
    if not sizes:
        return ["images: none in this data"]
    plan = template.images
    per_sample = [len(row) // 2 for row in dataset["image_hw"]]
    tokens = sorted(plan.tokens_for(h, w) for h, w in sizes)
    areas = sorted(sizes, key=lambda hw: hw[0] * hw[1])
    return [f"images: {len(sizes)} in {sum(1 for n in per_sample if n)} samples (at most {max(per_sample)} per sample); "
            f"processed sizes {areas[0][1]}x{areas[0][0]} to {areas[-1][1]}x{areas[-1][0]} pixels "
            f"(image_min_pixels {plan.min_pixels}, image_max_pixels {plan.max_pixels}); tokens per image: min "
            f"{tokens[0]}, median {int(statistics.median(tokens))}, max {tokens[-1]} "
            f"({sum(tokens)} in all)"]


def dropped_report(template: Any, data: Any, examples: list[Any], kept: set[str]) -> list[str]:
    """Which records a vision dataset dropped, and why: one line each (the first 5)."""
    from tuneforge.data.encode.tokenize import tokenize_turns_batch

    token_id = image_token_id(template.tokenizer, template.vision.image_token)
    protected = set(template.tokenizer(template.vision.image, add_special_tokens=False)["input_ids"])
    lines = []
    for example in (e for e in examples if e.source not in kept):
        turns = tokenize_turns_batch(template.tokenizer, [template.render(example)])[0]
        pictures = template.images.pictures([(path, example.source) for path in example.images])
        turns = expand_images(turns, token_id, [p.tokens for p in pictures], example.source)
        text_rule = encode_supervised(turns, data.cutoff_len, train_on_prompt=data.train_on_prompt,
                                      mask_history=data.mask_history,
                                      cut=lambda ids, keep: cut_around(ids, keep, protected))
        why = (f"shortening it to cutoff_len {data.cutoff_len} would cut into an image's tokens" if text_rule
               else f"nothing trainable is left within cutoff_len {data.cutoff_len}")
        lines.append(f"dropped {example.source}: {why}")
        if len(lines) == 5:
            break
    return lines
