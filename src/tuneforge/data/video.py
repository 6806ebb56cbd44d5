"""Videos in the data (Qwen2-VL / Qwen2.5-VL): decoded with PyAV, frames sampled at `video_fps` (at most
`video_maxlen`), each frame resized like a picture (LLaMA-Factory's `video_min_pixels`..`video_max_pixels`, then
the image processor's own `smart_resize`), and at batch time cut into the model's video patches.

Written here rather than calling transformers' `Qwen2VLVideoProcessor` because that class imports torchvision,
which has no CPU build for our torch; and rather than transformers' `read_video_pyav` because it trusts the
container's frame count (0 for animated GIFs and some streams) and keeps every decoded frame until the end.
Where torchvision imports, `video_inputs` hands the cached frames to transformers' own video processor instead
(that path cannot run on the machines the tests run on).

The patches are the video processor's layout: consecutive frames grouped in pairs (`temporal_patch_size`), the
frame count padded to a multiple of it by repeating the last frame, `pixel_values_videos` of shape
(grid_t * grid_h * grid_w, channels * temporal_patch_size * patch * patch) and `video_grid_thw`. Rescaling and
normalising are the image processor's own (`rescale`, `normalize`), so a video of two identical frames gives
exactly the pixel values of that frame as a picture (tests/multimodal/test_video.py).
Like pictures, the resized frames are cached with the tokenized data (uint8, one blob per video).
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.data.media import THREADS, ImagePlan, VideoSettings

INSTALL_HINT = "pip install 'tuneforge[video]'"


@dataclass(frozen=True)
class Clip:
    """One video as the model sees it: its sampled, resized frames and the video tokens it costs."""

    pixels: bytes  # frames x height x width x 3, uint8 (frame count already a multiple of temporal_patch_size)
    frames: int
    height: int
    width: int
    tokens: int
    fps: float  # frames sampled per second of video (Qwen2.5-VL's time positions: temporal_patch_size / fps)
    stamps: tuple[float, ...] = ()  # seconds into the video of each frame pair (Qwen3-VL writes them in the text)

    def frame_tokens(self) -> list[int]:
        """Video tokens of each frame pair (Qwen3-VL writes each pair between its own markers)."""
        return [self.tokens // len(self.stamps)] * len(self.stamps)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def _duration(container: Any, stream: Any) -> float:
    """Seconds of video: the stream's own duration, else the container's, else frames / rate, else 0."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    rate = stream.average_rate or stream.guessed_rate
    return float(stream.frames / rate) if stream.frames and rate else 0.0


def _pick(decoded: Any, duration: float, settings: VideoSettings, fit: Any = None) -> list[Any]:
    """The frames showing at `count` evenly spaced moments from the first frame on (count = duration x fps, at
    least 1, at most maxlen); a frame shown at several of those moments is taken once. Frames are turned into
    PIL images (resized by `fit`) only when picked, so memory holds the sampled frames at their final size,
    never the whole video; each image's info["time"] is its frame's seconds from the first frame."""
    count = max(1, min(settings.maxlen, math.floor(duration * settings.fps)))
    targets = [k * duration / count for k in range(count)]
    picked: list[Any] = []
    shown, start, at, previous = None, None, 0, None

    def take() -> None:
        image = shown.to_image()
        image = fit(image) if fit is not None else image
        image.info["time"] = shown_at - start
        picked.append(image)

    for index, frame in enumerate(decoded):
        time = frame.time if frame.time is not None else index / settings.fps
        start = time if start is None else start
        while at < count and shown is not None and targets[at] < time - start:
            if previous is not shown:
                take()
                previous = shown
            at += 1
        shown, shown_at = frame, time
    if shown is not None and at < count and previous is not shown:
        take()
    return picked


def _decoded(container: Any, stream: Any) -> Any:
    """The stream's frames; an end of file where the demuxer wanted more ends them (a stream with no frame
    written reads as one with no frame)."""
    import av

    try:
        yield from container.decode(stream)
    except av.error.EOFError:
        return


def sample_frames(path: str, settings: VideoSettings, where: str, fit: Any = None) -> tuple[list[Any], float]:
    """(the sampled frames as RGB PIL images, each resized by `fit` when given; frames sampled per second). A file
    PyAV cannot open or decode, or one with no frame, is one line naming it and the record; so is PyAV missing."""
    try:
        import av
    except ImportError:
        raise DataError(f"has videos, which need PyAV (not installed): {INSTALL_HINT}", source=where) from None
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise DataError(f"video {path} has no video stream", source=where)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            duration = _duration(container, stream)
            frames = _pick(_decoded(container, stream), duration, settings, fit)
    except FileNotFoundError:
        raise DataError(f"video {path} does not exist", source=where) from None
    except av.error.EOFError:  # the file ends before its first frame (a stream header and nothing in it)
        frames = []
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DataError(f"cannot read video {path} ({_first_line(exc)})", source=where) from None
    if not frames:
        raise DataError(f"video {path} has no frame that can be decoded", source=where)
    frames = [frame if frame.mode == "RGB" else frame.convert("RGB") for frame in frames]
    return frames, (len(frames) / duration if duration else settings.fps)


def video_tokens(plan: ImagePlan, frames: int, height: int, width: int) -> int:
    """Video tokens of `frames` frames at their processed size: grid_t * grid_h * grid_w / merge^2."""
    temporal = int(plan.processor.temporal_patch_size)
    grid_t = -(-frames // temporal)
    return grid_t * (height // plan.patch) * (width // plan.patch) // (plan.merge ** 2)


def read_clip(plan: ImagePlan, path: str, where: str) -> Clip:
    """A video file -> its Clip: frames sampled, resized in the picture's two steps (video limits, then the
    processor's rule), padded to a multiple of temporal_patch_size with the last frame."""
    from PIL import Image

    limits, steps = (plan.video.min_pixels, plan.video.max_pixels), []

    def fit(frame: Any) -> Any:  # the sizes come from the first frame sampled
        if not steps:
            steps.extend([plan.bounded(frame.height, frame.width, limits),
                          plan.size_for(frame.height, frame.width, f"{where} ({path})", limits)])
        for height, width in steps:
            if (height, width) != (frame.height, frame.width):
                frame = frame.resize((width, height), Image.Resampling.BICUBIC)
        return frame

    frames, fps = sample_frames(path, plan.video, where, fit)
    sized = list(frames)
    temporal = int(plan.processor.temporal_patch_size)
    times = [frame.info.get("time", i / plan.video.fps) for i, frame in enumerate(frames)]
    times += times[-1:] * (-len(times) % temporal)
    sized += [sized[-1]] * (-len(sized) % temporal)
    height, width = steps[-1]
    stamps = tuple(sum(times[i:i + temporal]) / temporal for i in range(0, len(times), temporal))
    return Clip(b"".join(frame.tobytes() for frame in sized), len(sized), height, width,
                video_tokens(plan, len(sized), height, width), fps, stamps)


def read_clips(plan: ImagePlan, jobs: list[tuple[str, str]]) -> list[Clip]:
    """[(path, record)] decoded and resized in a thread pool (PyAV and PIL release the GIL), in order."""
    if len(jobs) < 2:
        return [read_clip(plan, path, where) for path, where in jobs]
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda job: read_clip(plan, *job), jobs))


def _frames(clip: tuple[bytes, int, int, int, float]) -> Any:
    import numpy as np

    pixels, frames, height, width, _ = clip
    return np.frombuffer(pixels, dtype=np.uint8).reshape(frames, height, width, 3)


@functools.lru_cache(maxsize=1)
def _video_processor_class() -> Any:
    """transformers' Qwen2VLVideoProcessor where torchvision imports, else None (asked once per process)."""
    try:
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    except (ImportError, RuntimeError, OSError):  # no torchvision, or one built for another torch
        return None
    return Qwen2VLVideoProcessor


def _torchvision_inputs(processor: Any, videos: list[Any]) -> dict[str, Any] | None:
    """transformers' own video processor on the cached frames, where torchvision imports (untested here)."""
    video_class = _video_processor_class()
    if video_class is None:
        return None
    video_processor = video_class(
        patch_size=processor.patch_size, temporal_patch_size=processor.temporal_patch_size,
        merge_size=processor.merge_size, image_mean=processor.image_mean, image_std=processor.image_std,
        cap_pixels_per_frame=False)  # the frames are already sized
    out = video_processor(videos=videos, do_resize=False, do_sample_frames=False, return_tensors="pt")
    return {"pixel_values_videos": out["pixel_values_videos"], "video_grid_thw": out["video_grid_thw"]}


def patches(plan: ImagePlan, video: Any) -> Any:
    """One video's frames (t, h, w, 3 uint8; t a multiple of temporal_patch_size) -> its patches, in the video
    processor's (grid_t, row, column; channel, time, pixel row, pixel column) order. Rescaled and normalised by
    the image processor's own `rescale`/`normalize` (element-wise, so all frames go through in one call, laid
    one under another), which gives exactly the image path's values for each frame."""
    import numpy as np

    processor, patch, merge = plan.processor, plan.patch, plan.merge
    temporal = int(processor.temporal_patch_size)
    frames, height, width, channels = video.shape
    tall = np.ascontiguousarray(video.transpose(3, 0, 1, 2)).reshape(channels, frames * height, width)
    if processor.do_rescale:
        tall = processor.rescale(tall, processor.rescale_factor)
    if processor.do_normalize:
        tall = processor.normalize(tall, processor.image_mean, processor.image_std)
    grid_t, grid_h, grid_w = frames // temporal, height // patch, width // patch
    cut = np.asarray(tall, dtype=np.float32).reshape(channels, grid_t, temporal, grid_h // merge, merge, patch,
                                                      grid_w // merge, merge, patch)
    cut = cut.transpose(1, 3, 6, 4, 7, 0, 2, 5, 8)
    return cut.reshape(grid_t * grid_h * grid_w, channels * temporal * patch * patch), [grid_t, grid_h, grid_w]


def video_inputs(plan: ImagePlan, clips: list[tuple[bytes, int, int, int, float]]) -> dict[str, Any]:
    """Cached clips (pixels, frames, height, width, fps) -> pixel_values_videos, video_grid_thw and
    second_per_grid_ts (Qwen2.5-VL's seconds per temporal patch; Qwen2-VL's forward ignores it)."""
    import numpy as np
    import torch

    temporal = int(plan.processor.temporal_patch_size)
    videos = [_frames(clip) for clip in clips]
    seconds = torch.tensor([temporal / clip[4] for clip in clips], dtype=torch.float32)
    out = _torchvision_inputs(plan.processor, videos)
    if out is not None:
        return {**out, "second_per_grid_ts": seconds}
    cut = [patches(plan, video) for video in videos]
    return {"pixel_values_videos": torch.from_numpy(np.concatenate([values for values, _ in cut])),
            "video_grid_thw": torch.tensor([grid for _, grid in cut]), "second_per_grid_ts": seconds}
