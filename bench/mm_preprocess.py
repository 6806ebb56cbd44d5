"""Multimodal preprocessing: images/s of tuneforge's encode (decode + resize in a thread pool, cached with the
tokenized data) and batch-time pixel inputs, against a plain loop over the image processor.

    python bench/mm_preprocess.py [--images 1000] [--out /tmp/mm_bench]

- gen: N JPEG photos-like images (random sizes 256..800 px a side, random blocks of colour) and a ShareGPT
  dataset (`columns: {messages, images}`) using them, one image per record.
- plain: what a loader that calls the processor on each file does, every epoch: open the file and
  `processor(images=[image])` (Qwen2-VL's PIL image processor at its real defaults: min_pixels 56*56,
  max_pixels 28*28*1280, patch 14, merge 2).
- tuneforge, first epoch: `build_datasets` on an empty cache (decode, resize, tokenize, write the cache) plus the
  collator's pixel inputs for every sample (normalise + patchify from the cached pixels, `do_resize=False`).
- tuneforge, later epochs (and every cached start): the collator's pixel inputs alone.
The tiny Qwen2-VL's tokenizer is used (the tokens do not change the image work). Wall times depend on the
machine's load: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path


def generate(folder: Path, count: int) -> list[Path]:
    from PIL import Image, ImageDraw

    rng = random.Random(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths, rows = [], []
    for i in range(count):
        size = (rng.randint(256, 800), rng.randint(256, 800))
        image = Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = rng.randint(0, size[0] - 1), rng.randint(0, size[1] - 1)
            draw.rectangle((x, y, x + rng.randint(5, 200), y + rng.randint(5, 200)),
                           fill=tuple(rng.randint(0, 255) for _ in range(3)))
        path = folder / "images" / f"{i}.jpg"
        image.save(path, quality=90)
        paths.append(path)
        rows.append({"messages": [{"role": "user", "content": "<image>Describe the picture."},
                                  {"role": "assistant", "content": f"Blocks of colour, number {i}."}],
                     "images": [f"images/{i}.jpg"]})
    (folder / "data.json").write_text(json.dumps(rows), encoding="utf-8")
    info = {"pics": {"file_name": "data.json", "formatting": "sharegpt", "columns": {"messages": "messages",
                                                                                   "images": "images"},
                     "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                              "assistant_tag": "assistant"}}}
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return paths


def processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil()  # Qwen2-VL's own defaults


def plain(paths: list[Path]) -> float:
    from PIL import Image

    proc = processor()
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            proc(images=[image.convert("RGB")], return_tensors="pt")
    return time.perf_counter() - started


def ours(folder: Path) -> tuple[float, float, int]:
    """(encode seconds on an empty cache, collate seconds over every sample, image tokens in all)."""
    from tuneforge.config.load import load
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.templates import template_for
    from tuneforge.model.load import load_tokenizer

    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny-qwen2-vl", "template": "qwen2_vl", "dataset": "pics",
                        "dataset_dir": str(folder), "cutoff_len": 8192, "output_dir": "unused"})
    template = template_for(cfg.data, load_tokenizer(cfg.model), processor())
    started = time.perf_counter()
    data = build_datasets(cfg.data, template, "sft")
    encode = time.perf_counter() - started
    plan = template.images
    started = time.perf_counter()
    tokens = 0
    for batch in data.train.select_columns(["images", "image_hw"]).iter(batch_size=8):
        pictures = [(pixels, hw[2 * i], hw[2 * i + 1]) for pics, hw in zip(batch["images"], batch["image_hw"])
                    for i, pixels in enumerate(pics)]
        out = plan.pixel_inputs(pictures)
        tokens += int(out["image_grid_thw"].prod(-1).sum()) // plan.merge ** 2
    return encode, time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    folder = Path(args.out or tempfile.mkdtemp(prefix="mm_bench_"))
    os.environ["TUNEFORGE_CACHE"] = str(folder / "cache")  # an empty cache: the first epoch encodes
    paths = generate(folder, args.images)
    n = len(paths)
    plain_s = plain(paths)
    encode_s, collate_s, tokens = ours(folder)
    print(f"{n} images, {tokens} image tokens, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print("| path | seconds | images/s |")
    print("| --- | ---: | ---: |")
    print(f"| plain processor loop (every epoch) | {plain_s:.1f} | {n / plain_s:.1f} |")
    print(f"| tuneforge first epoch: encode + cache ({encode_s:.1f} s) + collate | {encode_s + collate_s:.1f} | "
          f"{n / (encode_s + collate_s):.1f} |")
    print(f"| tuneforge later epochs / cached start: collate from the cache | {collate_s:.1f} | {n / collate_s:.1f} |")


if __name__ == "__main__":
    main()
