"""Generation prompts with images (chat, predict, the API): the pictures placed where the conversation's
<image> placeholders are, each one's image token repeated as in training (data/encode/multimodal.py), and
the model's pixel inputs beside the ids."""

from __future__ import annotations

from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.data.encode.multimodal import image_token_id, prompt_with_images
from tuneforge.data.example import Example, Message
from tuneforge.data.templates.vision import IMAGE


def place_images(messages: list[Message], count: int) -> list[Message]:
    """Messages whose <image> placeholders number `count`; with none at all, the pictures go before the text
    of the last user message (what `/image` in chat and a bare image part mean)."""
    marks = sum(m.content.count(IMAGE) for m in messages)
    if marks == count:
        return messages
    if marks == 0:
        last = max(i for i, m in enumerate(messages) if m.role == "user")
        return [*messages[:last], Message("user", IMAGE * count + messages[last].content), *messages[last + 1:]]
    raise ConfigError(f"the conversation has {marks} {IMAGE} placeholders but {count} images; give one image per "
                      f"{IMAGE}")


def image_inputs(template: Any, messages: list[Message], system: str | None, tools: str | None, images: list[Any],
                 n: int, device: str) -> dict[str, Any]:
    """Tensors for `model.generate`: n copies of the prompt with its pictures (paths or PIL images)."""
    import torch

    plan = template.images
    if plan is None:
        raise ConfigError("images need a vision-language model with its image processor (e.g. Qwen2-VL); this model "
                          "is a text model")
    pictures = [plan.picture(image, "the prompt's image") for image in images]
    text = template.render_text(Example(messages=place_images(messages, len(images)), system=system, tools=tools),
                                for_generation=True)
    ids = torch.tensor([prompt_with_images(template, text, pictures)] * n)
    pixels = plan.pixel_inputs([(p.pixels, p.height, p.width) for p in pictures] * n)
    token = image_token_id(template.tokenizer, template.vision.image_token)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **pixels}
    if plan.token_types:  # Qwen-VL's 3-D rope positions
        batch["mm_token_type_ids"] = (ids == token).int()
    return {key: value.to(device) for key, value in batch.items()}
