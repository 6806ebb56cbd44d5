"""Generation prompts with images and videos (chat, predict, the API): the pictures placed where the
conversation's <image> placeholders are (videos where its <video> ones are), each one's image (video) token
repeated as in training (data/encode/multimodal.py), and the model's pixel inputs beside the ids.

A video rides in the engines' `images` list as a `Video` (chat's `/video PATH`), so the engines pass one list
of media through unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.data.encode.multimodal import image_token_id, prompt_with_images, stamped, video_token_id
from tuneforge.data.example import Example, Message
from tuneforge.data.templates.vision import IMAGE, VIDEO


@dataclass(frozen=True)
class Video:
    """A video file given with a prompt, in the engine's `images` list."""

    path: str


def place_images(messages: list[Message], count: int, mark: str = IMAGE) -> list[Message]:
    """Messages whose <image> (`mark`) placeholders number `count`; with none at all, the pictures go before the
    text of the last user message (what `/image` in chat and a bare image part mean)."""
    marks = sum(m.content.count(mark) for m in messages)
    if marks == count:
        return messages
    if marks == 0:
        last = max(i for i, m in enumerate(messages) if m.role == "user")
        return [*messages[:last], Message("user", mark * count + messages[last].content), *messages[last + 1:]]
    what = "video" if mark == VIDEO else "image"
    raise ConfigError(f"the conversation has {marks} {mark} placeholders but {count} {what}s; give one {what} per "
                      f"{mark}")


def model_takes(model: Any, key: str) -> bool:
    """Whether the model's forward names `key` (generate refuses inputs it does not): Qwen2.5-VL's
    second_per_grid_ts, which Qwen2-VL has no use for."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model: the model inside
    return key in inspect.signature(base.forward).parameters


def image_inputs(template: Any, messages: list[Message], system: str | None, tools: str | None, images: list[Any],
                 n: int, device: str, model: Any = None) -> dict[str, Any]:
    """Tensors for `model.generate`: n copies of the prompt with its pictures (paths or PIL images) and videos
    (`Video`)."""
    import torch

    plan = template.images
    if plan is None:
        raise ConfigError("images need a vision-language model with its image processor (e.g. Qwen2-VL); this model "
                          "is a text model")
    from tuneforge.data.video import read_clip, video_inputs

    videos = [item.path for item in images if isinstance(item, Video)]
    if videos and template.vision.video is None:
        raise ConfigError(f"videos need a model whose template takes them (Qwen2-VL / Qwen2.5-VL / Qwen3-VL); "
                          f"template '{template.name}' takes images only")
    pictures = [plan.picture(image, "the prompt's image") for image in images if not isinstance(image, Video)]
    clips = [read_clip(plan, path, "the prompt's video") for path in videos]
    messages = place_images(place_images(messages, len(pictures)), len(clips), VIDEO)
    example = Example(messages=messages, system=system, tools=tools, videos=videos)
    text = template.render_text(stamped(template, [example], clips)[0], for_generation=True)
    ids = torch.tensor([prompt_with_images(template, text, pictures, clips)] * n)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if pictures:
        batch.update(plan.pixel_inputs([(p.pixels, p.height, p.width) for p in pictures] * n))
    if clips:
        batch.update(video_inputs(plan, [(c.pixels, c.frames, c.height, c.width, c.fps) for c in clips] * n))
        if model is None or not model_takes(model, "second_per_grid_ts"):
            batch.pop("second_per_grid_ts")
    if plan.token_types:  # Qwen-VL's 3-D rope positions: 1 on image tokens, 2 on video tokens
        token = image_token_id(template.tokenizer, template.vision.image_token)
        batch["mm_token_type_ids"] = (ids == token).int() + 2 * (ids == (video_token_id(template) or -1)).int()
    return {key: value.to(device) for key, value in batch.items()}
