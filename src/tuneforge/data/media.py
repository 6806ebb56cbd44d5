"""Images in the data: read, resized to what the model's image processor would make of them, counted in
image tokens, and turned into the model's pixel inputs at batch time.

Reading and resizing (the slow part: decoding a file and a bicubic resize) happens once, while the dataset
is encoded, in a thread pool (PIL releases the GIL while it decodes and resizes); the resized RGB pixels
are stored in the tokenized cache, so a cached start and every epoch skip it. The collator then only
normalises and cuts them into patches through the processor itself (`do_resize=False`), which gives
exactly the processor's pixel values for the original file (tests/multimodal/test_encoding.py).

Written here rather than calling the processor on the files because the processor would redo the decode
and resize every epoch, and its output (float patches, 4 bytes a value, 6x the resized image) is too big
to cache. Resizing is LLaMA-Factory's (an image outside `image_min_pixels`..`image_max_pixels` scaled to fit)
followed by the processor's own rule (`smart_resize` of its module for the Qwen-VL family, with its own limits).
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tuneforge.config.errors import DataError

# Image processors whose resize rule we reproduce (the class name's start: Fast, Pil and slow variants).
QWEN_PROCESSORS = ("Qwen2VLImageProcessor",)
CROP_PROCESSORS = ("LlavaImageProcessor", "CLIPImageProcessor")
THREADS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class Picture:
    """One image as the model sees it: resized RGB pixels and the image tokens it costs."""

    pixels: bytes  # height x width x 3, uint8
    height: int
    width: int
    tokens: int


def open_image(path: str, where: str) -> Any:
    """The file as an RGB PIL image; a file PIL cannot read is one line naming it and the record."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist", source=where) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(f"cannot read image {path} ({first})", source=where) from None


@dataclass(frozen=True)
class VideoSettings:
    """LLaMA-Factory's video keys: frames sampled per second, at most `maxlen`, each frame scaled into
    [min_pixels, max_pixels] before the processor's own resize rule (data/video.py)."""

    fps: float = 2.0
    maxlen: int = 128
    min_pixels: int = 16 * 16
    max_pixels: int = 256 * 256


@dataclass(frozen=True)
class ImagePlan:
    """The model's image processor with the run's pixel limits: sizes, token counts and pixel inputs."""

    processor: Any
    min_pixels: int
    max_pixels: int
    token_types: bool = True  # the model's forward wants mm_token_type_ids (Qwen-VL's 3-D rope positions)
    video: VideoSettings = VideoSettings()  # how videos are sampled and sized (data/video.py)

    @property
    def patch(self) -> int:
        return int(self.processor.patch_size)

    @property
    def merge(self) -> int:
        return int(getattr(self.processor, "merge_size", 1))

    def key(self) -> str:
        """What the cached pixels depend on (the tokenized cache's key includes it)."""
        settings = {k: v for k, v in self.processor.to_dict().items() if not k.startswith("_")}
        return json.dumps([type(self.processor).__name__, settings, self.min_pixels, self.max_pixels,
                           getattr(self, "image_tokens", None), vars(self.video)], sort_keys=True, default=str)

    def bounded(self, height: int, width: int, limits: tuple[int, int] | None = None) -> tuple[int, int]:
        """LLaMA-Factory's first step: an image outside [image_min_pixels, image_max_pixels] (or `limits`, a video
        frame's) scaled (aspect kept) to the nearest bound; the processor's own rule comes after it."""
        low, high = limits or (self.min_pixels, self.max_pixels)
        pixels = height * width
        if low <= pixels <= high:
            return height, width
        factor = math.sqrt((high if pixels > high else low) / pixels)
        return max(1, int(height * factor)), max(1, int(width * factor))

    def size_for(self, height: int, width: int, where: str = "",
                 limits: tuple[int, int] | None = None) -> tuple[int, int]:
        """(height, width) the processor resizes an image of this size to (after `bounded`)."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        size = dict(self.processor.size)
        height, width = self.bounded(height, width, limits)
        try:
            return smart_resize(height, width, factor=self.patch * self.merge,
                                min_pixels=size.get("shortest_edge") or size["min_pixels"],
                                max_pixels=size.get("longest_edge") or size["max_pixels"])
        except ValueError as exc:  # an aspect ratio above 200
            raise DataError(f"image of {width}x{height} pixels cannot be used ({exc})", source=where) from None

    def tokens_for(self, height: int, width: int) -> int:
        """Image tokens of an image already at its processed size: t*h*w patches / merge^2 (t = 1)."""
        return (height // self.patch) * (width // self.patch) // (self.merge ** 2)

    def picture(self, path: Any, where: str) -> Picture:
        """A file path (or an already open PIL image) -> its Picture."""
        from PIL import Image

        image = open_image(path, where) if isinstance(path, (str, os.PathLike)) else path.convert("RGB")
        for height, width in (self.bounded(image.height, image.width),
                              self.size_for(image.height, image.width, f"{where} ({path})")):
            if (height, width) != (image.height, image.width):
                image = image.resize((width, height), Image.Resampling.BICUBIC)
        return Picture(image.tobytes(), image.height, image.width, self.tokens_for(image.height, image.width))

    def pictures(self, jobs: list[tuple[str, str]]) -> list[Picture]:
        """[(path, record)] read and resized in a thread pool, in order."""
        if len(jobs) < 2:
            return [self.picture(path, where) for path, where in jobs]
        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(lambda job: self.picture(*job), jobs))

    def pixel_inputs(self, pictures: list[tuple[bytes, int, int]]) -> dict[str, Any]:
        """Resized pictures (pixels, height, width) -> the model's pixel inputs (pixel_values, image_grid_thw)."""
        import numpy as np

        arrays = [np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3) for pixels, height, width in pictures]
        out = self.processor(images=arrays, do_resize=False, return_tensors="pt")
        return dict(out)


@dataclass(frozen=True)
class CropPlan(ImagePlan):
    """CLIP-style processors (LLaVA): every picture padded/resized/cropped to one size by the processor itself
    (run without rescale and normalise, which leaves uint8 pixels), costing the model's fixed `image_tokens`."""

    image_tokens: int = 0
    token_types: bool = False  # LLaVA's forward takes no mm_token_type_ids

    @property
    def patch(self) -> int:
        return 1

    def size_for(self, height: int, width: int, where: str = "",
                 limits: tuple[int, int] | None = None) -> tuple[int, int]:
        crop = self.processor.crop_size
        return int(crop["height"]), int(crop["width"])

    def tokens_for(self, height: int, width: int) -> int:
        return self.image_tokens

    def picture(self, path: Any, where: str) -> Picture:
        from PIL import Image

        image = open_image(path, where) if isinstance(path, (str, os.PathLike)) else path.convert("RGB")
        height, width = self.bounded(image.height, image.width)
        if (height, width) != (image.height, image.width):
            image = image.resize((width, height), Image.Resampling.BICUBIC)
        pixels = self.processor(images=[image], do_rescale=False, do_normalize=False, return_tensors="np")
        array = pixels["pixel_values"][0].transpose(1, 2, 0).astype("uint8")
        return Picture(array.tobytes(), array.shape[0], array.shape[1], self.image_tokens)

    def pixel_inputs(self, pictures: list[tuple[bytes, int, int]]) -> dict[str, Any]:
        import numpy as np

        arrays = [np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3) for pixels, height, width in pictures]
        out = self.processor(images=arrays, do_pad=False, do_resize=False, do_center_crop=False, return_tensors="pt")
        return {"pixel_values": out["pixel_values"]}


def crop_tokens(processor: Any) -> int:
    """Image tokens per picture of a CLIP-style processor, counted as LlavaProcessor counts them: patches of the
    crop, plus the vision tower's extra tokens (CLS), minus one when the model drops CLS ("default" strategy).
    model/vision.py sets those three facts of the model's config on the processor."""
    crop = processor.crop_size
    tokens = (crop["height"] // processor.patch_size) * (crop["width"] // processor.patch_size)
    tokens += processor.num_additional_image_tokens
    return tokens - 1 if processor.vision_feature_select_strategy == "default" else tokens


def image_plan(processor: Any, min_pixels: int, max_pixels: int, video: VideoSettings = VideoSettings()) -> ImagePlan:
    """The plan for a loaded image processor; processors whose resize rule is not reproduced here are refused
    in one line naming those that are."""
    name = type(processor).__name__
    for kind, low, high in (("image", min_pixels, max_pixels), ("video", video.min_pixels, video.max_pixels)):
        if low > high:
            raise DataError(f"{kind}_min_pixels {low} is above {kind}_max_pixels {high}")
    if name.startswith(QWEN_PROCESSORS):
        return ImagePlan(processor, min_pixels, max_pixels, video=video)
    if name.startswith(CROP_PROCESSORS) and getattr(processor, "patch_size", None):
        return CropPlan(processor, min_pixels, max_pixels, video=video, image_tokens=crop_tokens(processor))
    raise DataError(f"image processor {name} is not supported for training on images (supported: the Qwen2-VL / "
                    "Qwen2.5-VL / Qwen3-VL image processors, and LLaVA's)")
