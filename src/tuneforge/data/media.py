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
class ImagePlan:
    """The model's image processor with the run's pixel limits: sizes, token counts and pixel inputs."""

    processor: Any
    min_pixels: int
    max_pixels: int

    @property
    def patch(self) -> int:
        return int(self.processor.patch_size)

    @property
    def merge(self) -> int:
        return int(getattr(self.processor, "merge_size", 1))

    def key(self) -> str:
        """What the cached pixels depend on (the tokenized cache's key includes it)."""
        settings = {k: v for k, v in self.processor.to_dict().items() if not k.startswith("_")}
        return json.dumps([type(self.processor).__name__, settings, self.min_pixels, self.max_pixels],
                          sort_keys=True, default=str)

    def bounded(self, height: int, width: int) -> tuple[int, int]:
        """LLaMA-Factory's first step: an image outside [image_min_pixels, image_max_pixels] scaled (aspect kept)
        to the nearest bound; the processor's own rule comes after it."""
        pixels = height * width
        if self.min_pixels <= pixels <= self.max_pixels:
            return height, width
        factor = math.sqrt((self.max_pixels if pixels > self.max_pixels else self.min_pixels) / pixels)
        return max(1, int(height * factor)), max(1, int(width * factor))

    def size_for(self, height: int, width: int, where: str = "") -> tuple[int, int]:
        """(height, width) the processor resizes an image of this size to (after `bounded`)."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        size = dict(self.processor.size)
        height, width = self.bounded(height, width)
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


def image_plan(processor: Any, min_pixels: int, max_pixels: int) -> ImagePlan:
    """The plan for a loaded image processor; processors whose resize rule is not reproduced here are refused
    in one line naming what is supported."""
    name = type(processor).__name__
    if not name.startswith(QWEN_PROCESSORS):
        raise DataError(f"image processor {name} is not supported for training on images (supported: the "
                        "Qwen2-VL / Qwen2.5-VL / Qwen3-VL image processors)")
    if min_pixels > max_pixels:
        raise DataError(f"image_min_pixels {min_pixels} is above image_max_pixels {max_pixels}")
    return ImagePlan(processor, min_pixels, max_pixels)
