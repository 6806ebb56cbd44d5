"""Video preprocessing: clips/s of tuneforge's encode (PyAV decode + sampling + resize in a thread pool, frames
cached with the tokenized data) and batch-time video inputs, against a plain loop that decodes every epoch.

    python bench/video_preprocess.py [--clips 200] [--seconds 4] [--out /tmp/video_bench]

- gen: N mp4 clips (mpeg4, 320x240, 24 fps, `--seconds` long, moving blocks of colour) and a ShareGPT dataset
  (`columns: {messages, videos}`) using them, one clip per record.
- plain: what a loader without torchvision does every epoch: transformers' `read_video_pyav` with its
  `default_sample_indices_fn` at 2 frames/s (it decodes every frame up to the last one sampled), each sampled
  frame resized by PIL to the processor's size, then the same patches as ours (`data/video.video_inputs`).
- tuneforge, first epoch: `build_datasets` on an empty cache (decode, sample at video_fps 2, resize within
  video_max_pixels 256*256, tokenize, write the cache) plus the collator's video inputs for every sample.
- tuneforge, later epochs (and every cached start): the collator's video inputs alone.
The tiny Qwen2-VL's tokenizer is used with Qwen2-VL's real image processor defaults (patch 14, merge 2).
Wall times depend on the machine's load: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path


def generate(folder: Path, count: int, seconds: int) -> list[Path]:
    import av
    import numpy as np

    rng = random.Random(0)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    paths, rows = [], []
    for i in range(count):
        path = folder / "videos" / f"{i}.mp4"
        colour = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.uint8)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=24)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            for t in range(24 * seconds):
                frame = np.full((240, 320, 3), 40, dtype=np.uint8)
                x, y = (7 * t + i) % 260, (3 * t + 2 * i) % 180
                frame[y:y + 60, x:x + 60] = colour
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        paths.append(path)
        rows.append({"messages": [{"role": "user", "content": "<video>Where does the block go?"},
                                  {"role": "assistant", "content": f"Across the frame, clip {i}."}],
                     "videos": [f"videos/{i}.mp4"]})
    (folder / "data.json").write_text(json.dumps(rows), encoding="utf-8")
    info = {"clips": {"file_name": "data.json", "formatting": "sharegpt",
                      "columns": {"messages": "messages", "videos": "videos"},
                      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                               "assistant_tag": "assistant"}}}
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return paths


def template_and_data(folder: Path):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from tuneforge.config.load import load
    from tuneforge.data.templates import template_for
    from tuneforge.model.load import load_tokenizer

    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny-qwen2-vl", "template": "qwen2_vl", "dataset": "clips",
                        "dataset_dir": str(folder), "cutoff_len": 8192, "output_dir": "unused"})
    return template_for(cfg.data, load_tokenizer(cfg.model), Qwen2VLImageProcessorPil()), cfg.data


def plain(paths: list[Path], plan) -> float:
    from functools import partial

    from PIL import Image
    from transformers.video_utils import default_sample_indices_fn, read_video_pyav

    from tuneforge.data.video import video_inputs

    started = time.perf_counter()
    for path in paths:
        frames, _ = read_video_pyav(str(path), partial(default_sample_indices_fn, fps=2))
        height, width = plan.size_for(*frames.shape[1:3], limits=(plan.video.min_pixels, plan.video.max_pixels))
        sized = [Image.fromarray(f).resize((width, height), Image.Resampling.BICUBIC) for f in frames]
        sized += sized[-1:] * (len(sized) % 2)
        video_inputs(plan, [(b"".join(f.tobytes() for f in sized), len(sized), height, width, 2.0)])
    return time.perf_counter() - started


def ours(template, data) -> tuple[float, float, int]:
    """(encode seconds on an empty cache, collate seconds over every sample, video tokens in all)."""
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.video import video_inputs

    started = time.perf_counter()
    encoded = build_datasets(data, template, "sft")
    encode = time.perf_counter() - started
    plan, tokens = template.images, 0
    started = time.perf_counter()
    for batch in encoded.train.select_columns(["videos", "video_thw", "video_fps"]).iter(batch_size=8):
        clips = [(pixels, *thw[3 * i:3 * i + 3], fps[i]) for videos, thw, fps in
                 zip(batch["videos"], batch["video_thw"], batch["video_fps"]) for i, pixels in enumerate(videos)]
        out = video_inputs(plan, clips)
        tokens += int(out["video_grid_thw"].prod(-1).sum()) // plan.merge ** 2
    return encode, time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    folder = Path(args.out or tempfile.mkdtemp(prefix="video_bench_"))
    os.environ["TUNEFORGE_CACHE"] = str(folder / "cache")  # an empty cache: the first epoch encodes
    paths = generate(folder, args.clips, args.seconds)
    template, data = template_and_data(folder)
    n = len(paths)
    plain_s = plain(paths, template.images)
    encode_s, collate_s, tokens = ours(template, data)
    print(f"{n} clips of {args.seconds} s, {tokens} video tokens, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    print("| path | seconds | clips/s |")
    print("| --- | ---: | ---: |")
    print(f"| plain loop: read_video_pyav + resize + patches (every epoch) | {plain_s:.1f} | {n / plain_s:.1f} |")
    print(f"| tuneforge first epoch: encode + cache ({encode_s:.1f} s) + collate | {encode_s + collate_s:.1f} | "
          f"{n / (encode_s + collate_s):.1f} |")
    print(f"| tuneforge later epochs / cached start: collate from the cache | {collate_s:.1f} | {n / collate_s:.1f} |")


if __name__ == "__main__":
    main()
