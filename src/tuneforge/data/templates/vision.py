"""How a vision-language family writes an image (and a video) into the text: the `<image>` placeholder of the
data becomes the family's marker (e.g. Qwen-VL's `<|vision_start|><|image_pad|><|vision_end|>`), whose single
image token is later repeated once per image token the picture costs (data/encode/multimodal.py); `<video>`
likewise (Qwen2-VL's `<|vision_start|><|video_pad|><|vision_end|>`; Qwen3-VL's once per frame pair, after the
pair's time: data/encode/multimodal.py's `stamped`). A style without `video` takes no videos."""

from __future__ import annotations

from dataclasses import dataclass

IMAGE = "<image>"
VIDEO = "<video>"


@dataclass(frozen=True)
class VisionStyle:
    family: str  # for messages: the model families this style serves
    image: str  # what one <image> placeholder renders as
    image_token: str  # the token inside `image` that stands for the picture's tokens
    video: str | None = None  # what one <video> placeholder renders as (None: videos are refused)
    video_token: str | None = None  # the token inside `video` repeated once per video token
    timestamps: bool = False  # each frame pair written as "<t seconds>" + `video` (Qwen3-VL's processor)

    def fill(self, text: str) -> str:
        text = text.replace(IMAGE, self.image)
        return text.replace(VIDEO, self.video) if self.video else text


QWEN_VL = VisionStyle("Qwen2-VL / Qwen2.5-VL", "<|vision_start|><|image_pad|><|vision_end|>", "<|image_pad|>",
                      video="<|vision_start|><|video_pad|><|vision_end|>", video_token="<|video_pad|>")
# Qwen3-VL's processor writes every frame pair as its time ("<0.5 seconds>") then the marker around its tokens
QWEN3_VL = VisionStyle("Qwen3-VL", QWEN_VL.image, QWEN_VL.image_token, video=QWEN_VL.video,
                       video_token=QWEN_VL.video_token, timestamps=True)
LLAVA = VisionStyle("LLaVA-1.5", IMAGE, IMAGE)  # the model's own token is <image>: written as it is
