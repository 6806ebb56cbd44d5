"""End to end with videos: the tiny Qwen2-VL (full fine-tuning, vision tower and projector frozen) learns which
colour comes first in short clips it has never seen, so it reads the frames in order; chat's `/video` and
predict on eval data with videos answer from the clip."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import run_cli, write_yaml
from vl import COLOURS, ORDER_QUESTION, clip_frames, predicted, train_vl, write_clip, write_clips

HELD_OUT = 24
PAIRS = [(a, b) for a in COLOURS for b in COLOURS if a != b]


@pytest.fixture(scope="module")
def order_model(tmp_path_factory) -> Path:
    """60 steps of 8 clips (96 clips of two frames of one colour, then two of another)."""
    tmp = tmp_path_factory.mktemp("order")
    return train_vl(tmp, write_clips(tmp / "数据", 96), dataset="clips", finetuning_type="full",
                    learning_rate=0.006, max_steps=60)


def held_out(folder: Path, seed: int = 1) -> list[tuple[str, Path]]:
    """(first colour, clip) for every ordered pair of colours, other square positions than the training clips'."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    return [(PAIRS[i % 6][0], write_clip(folder / f"{i}.mp4", clip_frames(list(PAIRS[i % 6]), rng)))
            for i in range(HELD_OUT)]


def test_the_first_colour_of_unseen_clips_is_learned(order_model, tmp_path):
    """Every pair of colours comes in both orders, so a model blind to the frames' order gets at most half
    right (chance: a third)."""
    from tuneforge.config.load import load
    from tuneforge.data.example import Message
    from tuneforge.infer.hf import HFEngine
    from tuneforge.infer.images import Video

    cfg, _ = load(base={"model_name_or_path": str(order_model), "do_train": False, "do_sample": False,
                        "max_new_tokens": 5})
    engine = HFEngine(cfg.model, cfg.data, cfg.generate)
    answers = [(engine.chat([Message("user", f"<video>{ORDER_QUESTION}")], images=[Video(str(path))]), first)
               for first, path in held_out(tmp_path / "held")]
    right = sum(answer == first for answer, first in answers)
    assert right >= 20, answers


def test_chat_takes_a_video_command(order_model, tmp_path):
    first, path = held_out(tmp_path / "视频", seed=2)[2]
    config = write_yaml(tmp_path / "chat.yaml", model_name_or_path=str(order_model), do_sample=False,
                        max_new_tokens=5)
    result = run_cli("chat", str(config), stdin=f"/video {path}\n{ORDER_QUESTION}\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"User: [video {path}]" in result.stdout and f"Assistant: {first}" in result.stdout, result.stdout


def test_predict_reads_the_videos_of_the_eval_data(order_model, tmp_path):
    rows = predicted(order_model, write_clips(tmp_path / "eval", 6, seed=3), "clips", tmp_path)
    assert sum(row["predict"] == row["label"] for row in rows) >= 5, rows
