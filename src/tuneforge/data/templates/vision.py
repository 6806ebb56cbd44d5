"""How a vision-language family writes an image into the text: the `<image>` placeholder of the data
becomes the family's marker (e.g. Qwen-VL's `<|vision_start|><|image_pad|><|vision_end|>`), whose single
image token is later repeated once per image token the picture costs (data/encode/multimodal.py)."""

from __future__ import annotations

from dataclasses import dataclass

IMAGE = "<image>"
VIDEO = "<video>"


@dataclass(frozen=True)
class VisionStyle:
    family: str  # for messages: the model families this style serves
    image: str  # what one <image> placeholder renders as
    image_token: str  # the token inside `image` that stands for the picture's tokens

    def fill(self, text: str) -> str:
        return text.replace(IMAGE, self.image)


QWEN_VL = VisionStyle("Qwen2-VL / Qwen2.5-VL / Qwen3-VL", "<|vision_start|><|image_pad|><|vision_end|>",
                      "<|image_pad|>")
LLAVA = VisionStyle("LLaVA-1.5", IMAGE, IMAGE)  # the model's own token is <image>: written as it is
