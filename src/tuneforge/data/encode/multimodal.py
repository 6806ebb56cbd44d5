"""Supervised samples with images and videos: each picture's single image token (what the template rendered for
its <image>) repeated once per image token the picture costs, as the family's processor does, and each video's
video token once per video token (data/video.py); image and video tokens never train; and truncation never cuts
into a picture or a video.

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
from tuneforge.data.video import Clip, video_tokens


@dataclass
class VisionSample:
    input_ids: list[int]
    labels: list[int]
    full_len: int


def expand_images(turns: list[TurnIds], token_id: int, counts: list[int], where: str,
                  what: str = "image") -> list[TurnIds]:
    """Every piece's k-th image (or video) token (in conversation order) repeated counts[k] times."""
    found = sum(piece.count(token_id) for turn in turns for piece in (turn.prompt, turn.answer, turn.suffix))
    if found != len(counts):  # the text itself held the model's image token
        raise DataError(f"has {found} {what} tokens after rendering for {len(counts)} {what}s (does the text "
                        f"contain the model's own {what} token?)", source=where)
    pending = iter(counts)

    def grow(piece: list[int]) -> list[int]:
        out: list[int] = []
        for tid in piece:
            out += [tid] * next(pending) if tid == token_id else [tid]
        return out

    return [TurnIds(grow(t.prompt), grow(t.answer), grow(t.suffix)) for t in turns]


@dataclass(frozen=True)
class Guard:
    """What a cut must leave whole: the `tokens` (image and video tokens, their markers) and, for Qwen3-VL's
    timestamped videos, the `lead` tokens before every `lead_token` (a frame pair's "<t seconds>" before its
    <|vision_start|>; a token or two of text before a video's first pair is kept with it)."""

    tokens: frozenset[int]
    lead_token: int = -1
    lead: int = 0

    def mask(self, ids: list[int]) -> list[bool]:
        marked = [tid in self.tokens for tid in ids]
        for i, tid in enumerate(ids):
            if tid == self.lead_token:
                marked[max(0, i - self.lead):i] = [True] * (i - max(0, i - self.lead))
        return marked

    def seal(self, ids: list[int]) -> tuple:
        """What must be the same before and after a cut: the guarded tokens' counts and every lead."""
        leads = tuple(tuple(ids[max(0, i - self.lead):i]) for i, tid in enumerate(ids) if tid == self.lead_token)
        return tuple(sorted((tid, ids.count(tid)) for tid in self.tokens)), leads


def cut_around(ids: list[int], keep: int, protected: Guard) -> list[int]:
    """`cut_prompt` (the middle of the prompt removed, head and tail kept) with the removed stretch slid to
    the nearest place that holds nothing `protected` guards; `cut_prompt` itself when there is none (the sample
    is then dropped: its seal changed)."""
    if keep >= len(ids):
        return ids
    remove, head = len(ids) - keep, keep // 2
    blocked = [0]
    for marked in protected.mask(ids):
        blocked.append(blocked[-1] + marked)
    # the first token (the conversation's start) and the last (the assistant header's end) always stay
    for start in sorted(range(1, len(ids) - remove), key=lambda s: abs(s - head)):
        if blocked[start + remove] == blocked[start]:
            return ids[:start] + ids[start + remove:]
    return cut_prompt(ids, keep)


def check_room(pictures: list[Picture], clips: list[Clip], cutoff_len: int, where: str) -> None:
    """A picture or video costing cutoff_len tokens or more is one line (no sample could hold it)."""
    for picture in pictures:
        if picture.tokens >= cutoff_len:
            raise DataError(f"an image of {picture.width}x{picture.height} pixels costs {picture.tokens} tokens, "
                            f"which leaves no room in cutoff_len {cutoff_len}; raise cutoff_len or lower "
                            "image_max_pixels", source=where)
    for clip in clips:
        if clip.tokens >= cutoff_len:
            raise DataError(f"a video of {clip.frames} frames of {clip.width}x{clip.height} pixels costs "
                            f"{clip.tokens} tokens, which leaves no room in cutoff_len {cutoff_len}; raise cutoff_len "
                            "or lower video_max_pixels, video_maxlen or video_fps", source=where)


def video_counts(clips: list[Clip], stamps: bool = False) -> list[int]:
    """How often each rendered video token is repeated, in order: once per video, or (`stamps`, Qwen3-VL) once
    per frame pair."""
    return [n for clip in clips for n in (clip.frame_tokens() if stamps else [clip.tokens])]


def stamped(template: Any, examples: list[Any], clips: list[Clip]) -> list[Any]:
    """The examples as a template with `timestamps` (Qwen3-VL) renders them: each <video> written the way its
    processor writes it, every frame pair as "<t seconds>" and the video marker (whose one video token is
    repeated by that pair's tokens); other templates' examples unchanged."""
    import dataclasses

    from tuneforge.data.example import Message
    from tuneforge.data.templates.vision import VIDEO

    style = template.vision
    if not style.timestamps or not clips:
        return examples
    pending = iter(clips)

    def written(text: str) -> str:
        pieces = text.split(VIDEO)
        return pieces[0] + "".join("".join(f"<{t:.1f} seconds>{style.video}" for t in next(pending).stamps) + rest
                                   for rest in pieces[1:])

    return [dataclasses.replace(e, messages=[Message(m.role, written(m.content)) for m in e.messages])
            if e.videos else e for e in examples]


def encode_vision(turns: list[TurnIds], pictures: list[Picture], token_id: int, cutoff_len: int, where: str, *,
                  train_on_prompt: bool = False, mask_history: bool = False, protected: Guard | None = None,
                  clips: list[Clip] | None = None, video_token_id: int | None = None,
                  stamps: bool = False) -> VisionSample | None:
    """-> the sample, or None when nothing trainable fits or the cut would go through a picture or video.
    `protected`: what a cut must not remove (the image and video tokens, the markers around them, Qwen3-VL's
    frame times); `stamps`: the videos were rendered frame pair by frame pair (`stamped`)."""
    clips = clips or []
    check_room(pictures, clips, cutoff_len, where)
    media = [(token_id, [p.tokens for p in pictures])]
    turns = expand_images(turns, token_id, media[0][1], where)
    if video_token_id is not None:
        media.append((video_token_id, video_counts(clips, stamps)))
        turns = expand_images(turns, video_token_id, media[1][1], where, "video")
    guard = protected or Guard(frozenset())
    guard = Guard(guard.tokens | {tid for tid, _ in media}, guard.lead_token, guard.lead)
    whole = [tid for t in turns for piece in (t.prompt, t.answer, t.suffix) for tid in piece]
    encoded = encode_supervised(turns, cutoff_len, train_on_prompt=train_on_prompt, mask_history=mask_history,
                                cut=lambda ids, keep: cut_around(ids, keep, guard))
    if encoded is None:
        return None
    ids, labels = encoded
    if any(ids.count(tid) != sum(counts) for tid, counts in media) or guard.seal(ids) != guard.seal(whole):
        return None
    masked = {tid for tid, _ in media}
    labels = [IGNORE_INDEX if tid in masked else label for tid, label in zip(ids, labels)]
    return VisionSample(ids, labels, len(whole))


def image_token_id(tokenizer: Any, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(tid, int) or tid == tokenizer.unk_token_id:
        raise DataError(f"the tokenizer has no {token} token; a vision template needs the vision model's own tokenizer")
    return tid


def video_token_id(template: Any) -> int | None:
    """The video token of a template that takes videos (None for one that does not)."""
    style = template.vision
    return image_token_id(template.tokenizer, style.video_token) if style.video_token else None


def marker_ids(template: Any) -> Guard:
    """What a cut never removes: the tokens of the image and video markers, and Qwen3-VL's frame times (as many
    tokens before every <|vision_start|> as the longest time takes)."""
    style, tokenizer = template.vision, template.tokenizer
    tokens = frozenset(tokenizer(style.image + (style.video or ""), add_special_tokens=False)["input_ids"])
    if not style.timestamps:
        return Guard(tokens)
    lead = len(tokenizer("<99999.9 seconds>", add_special_tokens=False)["input_ids"]) + 1  # +1: a merge with text
    return Guard(tokens, tokenizer.convert_tokens_to_ids("<|vision_start|>"), lead)


def read_media(template: Any, examples: list[Any]) -> tuple[list[Picture], list[Clip]]:
    """The examples' pictures and videos, read and resized in thread pools; videos for a template that takes
    none are one line naming the one that does."""
    from tuneforge.data.video import read_clips

    jobs = [(path, e.source) for e in examples for path in e.videos]
    if jobs and template.vision.video is None:
        raise DataError(f"has videos, but template '{template.name}' ({template.vision.family}) takes images only; "
                        "videos are supported for Qwen2-VL / Qwen2.5-VL (template qwen2_vl) and Qwen3-VL (qwen3_vl, "
                        "qwen3_vl_nothink)", source=jobs[0][1])
    pictures = template.images.pictures([(path, e.source) for e in examples for path in e.images])
    return pictures, read_clips(template.images, jobs) if jobs else []


MEDIA_COLUMNS = ("images", "image_hw", "videos", "video_thw", "video_fps", "source")


def vision_encoder(template: Any, data: Any) -> Any:
    """The supervised batch encoder of a vision template: one tokenizer call per batch (as for text), the
    batch's pictures and videos read and resized in thread pools."""
    from tuneforge.data.encode.tokenize import tokenize_turns_batch
    from tuneforge.data.example import Example

    token_id = image_token_id(template.tokenizer, template.vision.image_token)
    video_id, protected = video_token_id(template), marker_ids(template)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        examples = [Example.from_dict(dict(zip(batch, values))) for values in zip(*batch.values())]
        pictures, clips = read_media(template, examples)
        examples = stamped(template, examples, clips)
        conversations = tokenize_turns_batch(template.tokenizer, [template.render(e) for e in examples])
        out: dict[str, list] = {key: [] for key in ("input_ids", "labels", "full_len", *MEDIA_COLUMNS)}
        at = seen = 0
        for example, turns in zip(examples, conversations):
            own, at = pictures[at:at + len(example.images)], at + len(example.images)
            videos, seen = clips[seen:seen + len(example.videos)], seen + len(example.videos)
            sample = encode_vision(turns, own, token_id, data.cutoff_len, example.source,
                                   train_on_prompt=data.train_on_prompt, mask_history=data.mask_history,
                                   protected=protected, clips=videos, video_token_id=video_id,
                                   stamps=template.vision.timestamps)
            if sample is None:
                continue
            for key, value in (("input_ids", sample.input_ids), ("labels", sample.labels),
                               ("full_len", sample.full_len), ("images", [p.pixels for p in own]),
                               ("image_hw", [side for p in own for side in (p.height, p.width)]),
                               ("videos", [c.pixels for c in videos]),
                               ("video_thw", [n for c in videos for n in (c.frames, c.height, c.width)]),
                               ("video_fps", [c.fps for c in videos]), ("source", example.source)):
                out[key].append(value)
        return out

    return encode


def vision_collator(template: Any, text_collator: Any) -> Any:
    """The batch collator for a vision template's samples (data/collate.py's VisionCollator)."""
    from tuneforge.data.collate import VisionCollator

    token_id = image_token_id(template.tokenizer, template.vision.image_token)
    video_id = video_token_id(template)
    return VisionCollator(text_collator, template.images, token_id, -1 if video_id is None else video_id)


def prompt_with_images(template: Any, text: str, pictures: list[Picture], clips: list[Clip] | None = None) -> list[int]:
    """A rendered generation prompt's ids with each picture's image token repeated, and each video's video token
    (chat, predict, the API)."""
    token_id = image_token_id(template.tokenizer, template.vision.image_token)
    turns = [TurnIds(template.tokenizer(text, add_special_tokens=False)["input_ids"], [], [])]
    turns = expand_images(turns, token_id, [p.tokens for p in pictures], "the prompt")
    if clips:
        turns = expand_images(turns, video_token_id(template), video_counts(clips, template.vision.timestamps),
                              "the prompt", "video")
    return turns[0].prompt


def image_report(template: Any, dataset: Any) -> list[str]:
    """`data check`'s lines about the pictures of an encoded vision dataset: how many, their processed sizes and
    the image tokens each costs; then the videos'."""
    import statistics

    sizes = [(row[i], row[i + 1]) for row in dataset["image_hw"] for i in range(0, len(row), 2)]
    if not sizes:
        return video_report(template, dataset) or ["images: none in this data"]
    plan = template.images
    per_sample = [len(row) // 2 for row in dataset["image_hw"]]
    tokens = sorted(plan.tokens_for(h, w) for h, w in sizes)
    areas = sorted(sizes, key=lambda hw: hw[0] * hw[1])
    return [f"images: {len(sizes)} in {sum(1 for n in per_sample if n)} samples (at most {max(per_sample)} per sample); "
            f"processed sizes {areas[0][1]}x{areas[0][0]} to {areas[-1][1]}x{areas[-1][0]} pixels "
            f"(image_min_pixels {plan.min_pixels}, image_max_pixels {plan.max_pixels}); tokens per image: min "
            f"{tokens[0]}, median {int(statistics.median(tokens))}, max {tokens[-1]} "
            f"({sum(tokens)} in all)", *video_report(template, dataset)]


def video_report(template: Any, dataset: Any) -> list[str]:
    """`data check`'s line about the videos of an encoded vision dataset: how many, frames and tokens per video."""
    import statistics

    if "video_thw" not in dataset.column_names or not any(dataset["video_thw"]):
        return []
    thw = [row[i:i + 3] for row in dataset["video_thw"] for i in range(0, len(row), 3)]
    per_sample = [len(row) // 3 for row in dataset["video_thw"]]
    plan = template.images
    frames = sorted(t for t, _, _ in thw)
    tokens = sorted(video_tokens(plan, t, h, w) for t, h, w in thw)
    areas = sorted((h * w, w, h) for _, h, w in thw)
    return [f"videos: {len(thw)} in {sum(1 for n in per_sample if n)} samples (at most {max(per_sample)} per sample); "
            f"frames per video: min {frames[0]}, median {int(statistics.median(frames))}, max {frames[-1]} "
            f"(video_fps {plan.video.fps}, video_maxlen {plan.video.maxlen}); frame sizes {areas[0][1]}x{areas[0][2]} "
            f"to {areas[-1][1]}x{areas[-1][2]} pixels; tokens per video: min {tokens[0]}, median "
            f"{int(statistics.median(tokens))}, max {tokens[-1]} ({sum(tokens)} in all)"]


def dropped_report(template: Any, data: Any, examples: list[Any], kept: set[str]) -> list[str]:
    """Which records a vision dataset dropped, and why: one line each (the first 5)."""
    from tuneforge.data.encode.tokenize import tokenize_turns_batch

    token_id = image_token_id(template.tokenizer, template.vision.image_token)
    video_id, protected = video_token_id(template), marker_ids(template)
    lines = []
    for example in (e for e in examples if e.source not in kept):
        pictures, clips = read_media(template, [example])
        turns = tokenize_turns_batch(template.tokenizer, [template.render(stamped(template, [example], clips)[0])])[0]
        turns = expand_images(turns, token_id, [p.tokens for p in pictures], example.source)
        if video_id is not None:
            turns = expand_images(turns, video_id, video_counts(clips, template.vision.timestamps), example.source,
                                  "video")
        text_rule = encode_supervised(turns, data.cutoff_len, train_on_prompt=data.train_on_prompt,
                                      mask_history=data.mask_history,
                                      cut=lambda ids, keep: cut_around(ids, keep, protected))
        what = " or ".join(kind for kind, files in (("an image's", example.images), ("a video's", example.videos))
                           if files)
        why = (f"shortening it to cutoff_len {data.cutoff_len} would cut into {what} tokens" if text_rule
               else f"nothing trainable is left within cutoff_len {data.cutoff_len}")
        lines.append(f"dropped {example.source}: {why}")
        if len(lines) == 5:
            break
    return lines
