"""What the multimodal tests share: generated coloured squares in a Chinese-named folder (registered like
LLaMA-Factory's mllm_demo) and training the tiny Qwen2-VL on them. (Not a conftest.py: tests/conftest.py
owns that module name.)"""

from __future__ import annotations

import json
import random
from pathlib import Path

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 50, 220)}
QUESTION = "What colour is this square?"


def square(colour: str, rng: random.Random):
    """A 56x56 PIL image: a 30-pixel square of `colour` at a random place on a dark grey background."""
    from PIL import Image

    image = Image.new("RGB", (56, 56), (rng.randint(0, 60),) * 3)
    x, y = rng.randint(0, 20), rng.randint(0, 20)
    image.paste(COLOURS[colour], (x, y, x + 30, y + 30))
    return image


def write_squares(folder: Path, count: int, seed: int = 0) -> Path:
    """A dataset folder registered the way LLaMA-Factory's mllm_demo is (sharegpt, `columns: {messages, images}`),
    images under 图片/ given relative to the folder."""
    rng = random.Random(seed)
    (folder / "图片").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        colour = list(COLOURS)[i % 3]
        square(colour, rng).save(folder / "图片" / f"{i}.png")
        rows.append({"messages": [{"role": "user", "content": f"<image>{QUESTION}"},
                                  {"role": "assistant", "content": colour}], "images": [f"图片/{i}.png"]})
    return register(folder, "squares", rows, "images")


def register(folder: Path, name: str, rows: list[dict], media: str) -> Path:
    """`rows` written to NAME.json in `folder` and registered in its dataset_info.json (sharegpt, columns
    messages and `media`)."""
    (folder / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    info = {name: {"file_name": f"{name}.json", "formatting": "sharegpt",
                   "columns": {"messages": "messages", media: media},
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                            "assistant_tag": "assistant"}}}
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return folder


VL_SFT = {"model_name_or_path": "tuneforge/tiny-qwen2-vl", "stage": "sft", "do_train": True, "dataset": "squares",
          "cutoff_len": 128, "per_device_train_batch_size": 8, "lr_scheduler_type": "cosine", "logging_steps": 10,
          "save_strategy": "no", "report_to": "none", "overwrite_output_dir": True}


def train_vl(tmp: Path, dataset_dir: Path, **keys) -> Path:
    from conftest import write_yaml
    from tuneforge.cli.train import run_train

    out = tmp / "out"
    cfg = write_yaml(tmp / "train.yaml", **{**VL_SFT, "dataset_dir": str(dataset_dir), **keys, "output_dir": str(out)})
    run_train(cfg, [])
    return out


def write_clip(path: Path, frames: list, fps: int = 2, codec: str = "mpeg4") -> Path:
    """A video file of PIL frames written with PyAV: mpeg4 in .mp4 (lossy), or ffv1 in .mkv (lossless, rgb)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())
    return path


def clip_frames(colours: list[str], rng: random.Random, per_colour: int = 2) -> list:
    """Frames of squares, `per_colour` frames of each colour in turn (the square moves between frames)."""
    return [square(colour, rng) for colour in colours for _ in range(per_colour)]


ORDER_QUESTION = "Which colour comes first?"


def write_clips(folder: Path, count: int, seed: int = 0) -> Path:
    """A dataset of short clips (registered as `clips`, sharegpt, `columns: {messages, videos}`) under 视频/: two
    frames of one colour, then two of another; the answer is the first colour (the frames' order decides)."""
    rng = random.Random(seed)
    (folder / "视频").mkdir(parents=True, exist_ok=True)
    pairs = [(a, b) for a in COLOURS for b in COLOURS if a != b]
    rows = []
    for i in range(count):
        first, then = pairs[i % len(pairs)]
        write_clip(folder / "视频" / f"{i}.mp4", clip_frames([first, then], rng))
        rows.append({"messages": [{"role": "user", "content": f"<video>{ORDER_QUESTION}"},
                                  {"role": "assistant", "content": first}], "videos": [f"视频/{i}.mp4"]})
    return register(folder, "clips", rows, "videos")


def predicted(model: Path, folder: Path, dataset: str, tmp: Path) -> list[dict]:
    """`tuneforge train` with do_predict on the eval dataset `dataset` in `folder`: the generated_predictions rows."""
    from conftest import run_cli, write_yaml

    config = write_yaml(tmp / "predict.yaml", model_name_or_path=str(model), do_train=False, do_predict=True,
                        predict_with_generate=True, eval_dataset=dataset, dataset_dir=str(folder), do_sample=False,
                        max_new_tokens=5, output_dir=str(tmp / "p"))
    result = run_cli("train", str(config))
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in (tmp / "p" / "generated_predictions.jsonl").read_text().splitlines()]
