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
(grid_t * grid_h * grid_w, channels * temporal_patch_size * patch * patch) and `video_grid_thw`. Normalising
is left to the image processor itself (one frame at a time, `do_resize=False`), so a video of two identical
frames gives exactly the pixel values of that frame as a picture (tests/multimodal/test_video.py).
Like pictures, the resized frames are cached with the tokenized data (uint8, one blob per video).
"""

from __future__ import annotations

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


def _pick(decoded: Any, duration: float, settings: VideoSettings) -> list[Any]:
    """The frames showing at `count` evenly spaced moments from the first frame on (count = duration x fps, at
    least 1, at most maxlen); a frame shown at several of those moments is taken once. Frames are turned into
    PIL images only when picked, so memory holds the sampled frames, never the whole video."""
    count = max(1, min(settings.maxlen, math.floor(duration * settings.fps)))
    targets = [k * duration / count for k in range(count)]
    picked: list[Any] = []
    shown, start, at, previous = None, None, 0, None
    for index, frame in enumerate(decoded):
        time = frame.time if frame.time is not None else index / settings.fps
        start = time if start is None else start
        while at < count and shown is not None and targets[at] < time - start:
            if previous is not shown:
                picked.append(shown.to_image())
                previous = shown
            at += 1
        shown = frame
    if shown is not None and at < count and previous is not shown:
        picked.append(shown.to_image())
    return picked


def _decoded(container: Any, stream: Any) -> Any:
    """The stream's frames; an end of file where the demuxer wanted more ends them (a stream with no frame
    written reads as one with no frame)."""
    import av

    try:
        yield from container.decode(stream)
    except av.error.EOFError:
        return


def sample_frames(path: str, settings: VideoSettings, where: str) -> tuple[list[Any], float]:
    """(the sampled frames as RGB PIL images, frames sampled per second). A file PyAV cannot open or decode,
    or one with no frame, is one line naming it and the record; so is PyAV missing."""
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
            frames = _pick(_decoded(container, stream), duration, settings)
    except FileNotFoundError:
        raise DataError(f"video {path} does not exist", source=where) from None
    except av.error.EOFError:  # the file ends before its first frame (a stream header and nothing in it)
        frames = []
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DataError(f"cannot read video {path} ({_first_line(exc)})", source=where) from None
    if not frames:
        raise DataError(f"video {path} has no frame that can be decoded", source=where)
    return [frame.convert("RGB") for frame in frames], (len(frames) / duration if duration else settings.fps)


def video_tokens(plan: ImagePlan, frames: int, height: int, width: int) -> int:
    """Video tokens of `frames` frames at their processed size: grid_t * grid_h * grid_w / merge^2."""
    temporal = int(plan.processor.temporal_patch_size)
    grid_t = -(-frames // temporal)
    return grid_t * (height // plan.patch) * (width // plan.patch) // (plan.merge ** 2)


def read_clip(plan: ImagePlan, path: str, where: str) -> Clip:
    """A video file -> its Clip: frames sampled, resized in the picture's two steps (video limits, then the
    processor's rule), padded to a multiple of temporal_patch_size with the last frame."""
    from PIL import Image

    frames, fps = sample_frames(path, plan.video, where)
    limits = (plan.video.min_pixels, plan.video.max_pixels)
    first = frames[0]
    steps = (plan.bounded(first.height, first.width, limits),
             plan.size_for(first.height, first.width, f"{where} ({path})", limits))
    sized = []
    for frame in frames:
        for height, width in steps:
            if (height, width) != (frame.height, frame.width):
                frame = frame.resize((width, height), Image.Resampling.BICUBIC)
        sized.append(frame)
    sized += [sized[-1]] * (-len(sized) % int(plan.processor.temporal_patch_size))
    height, width = steps[-1]
    return Clip(b"".join(frame.tobytes() for frame in sized), len(sized), height, width,
                video_tokens(plan, len(sized), height, width), fps)


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


def _torchvision_inputs(processor: Any, videos: list[Any]) -> dict[str, Any] | None:
    """transformers' own video processor on the cached frames, where torchvision imports (untested here)."""
    try:
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    except (ImportError, RuntimeError, OSError):
        return None
    video_processor = Qwen2VLVideoProcessor(
        patch_size=processor.patch_size, temporal_patch_size=processor.temporal_patch_size,
        merge_size=processor.merge_size, image_mean=processor.image_mean, image_std=processor.image_std)
    out = video_processor(videos=videos, do_resize=False, do_sample_frames=False, return_tensors="pt")
    return {"pixel_values_videos": out["pixel_values_videos"], "video_grid_thw": out["video_grid_thw"]}


def video_inputs(plan: ImagePlan, clips: list[tuple[bytes, int, int, int, float]]) -> dict[str, Any]:
    """Cached clips (pixels, frames, height, width, fps) -> pixel_values_videos, video_grid_thw and
    second_per_grid_ts (Qwen2.5-VL's seconds per temporal patch; Qwen2-VL's forward ignores it)."""
    import torch

    processor, temporal = plan.processor, int(plan.processor.temporal_patch_size)
    videos = [_frames(clip) for clip in clips]
    seconds = torch.tensor([temporal / clip[4] for clip in clips], dtype=torch.float32)
    out = _torchvision_inputs(processor, videos)
    if out is not None:
        return {**out, "second_per_grid_ts": seconds}
    # every frame as a picture (the processor repeats it temporal_patch_size times), then consecutive frames'
    # patches laid side by side on the temporal axis: the video processor's (channel, time, row, column) order
    normed = processor(images=[frame for video in videos for frame in video], do_resize=False, return_tensors="pt")
    channels, patch = 3, plan.patch
    patches, grids, at = [], [], 0
    for video in videos:
        grid_t, grid_h, grid_w = len(video) // temporal, video.shape[1] // patch, video.shape[2] // patch
        count = len(video) * grid_h * grid_w
        own = normed["pixel_values"][at:at + count].view(grid_t, temporal, grid_h * grid_w, channels, temporal, -1)
        own = own[:, :, :, :, 0].permute(0, 2, 3, 1, 4)  # one frame each; (t, patch, channel, frame, pixels)
        patches.append(own.reshape(grid_t * grid_h * grid_w, -1))
        grids.append([grid_t, grid_h, grid_w])
        at += count
    return {"pixel_values_videos": torch.cat(patches), "video_grid_thw": torch.tensor(grids),
            "second_per_grid_ts": seconds}
