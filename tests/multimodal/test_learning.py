"""End to end: the tiny Qwen2-VL learns to name the colour of a square it has never seen (full fine-tuning,
vision tower and projector frozen), and answers about an image in chat, predict and the API; LoRA on it trains."""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import pytest
from conftest import run_cli, write_yaml
from vl import COLOURS, QUESTION, predicted, square, train_vl, write_squares

HELD_OUT = 24


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> Path:
    return write_squares(tmp_path_factory.mktemp("squares"), 96)


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory, squares) -> Path:
    """Full fine-tuning with the defaults (vision tower and projector frozen): 80 steps of 8 samples."""
    return train_vl(tmp_path_factory.mktemp("colour"), squares, finetuning_type="full", learning_rate=0.006,
                    max_steps=80)


def held_out(seed: int = 1) -> list[tuple[str, object]]:
    rng = random.Random(seed)  # other positions and backgrounds than the training squares (seed 0)
    return [(colour, square(colour, rng)) for colour in list(COLOURS) * (HELD_OUT // 3)]


def engine_for(model: Path, serving: bool = False):
    from tuneforge.config.load import load
    from tuneforge.infer.hf import HFEngine

    cfg, _ = load(base={"model_name_or_path": str(model), "do_train": False, "do_sample": False,
                        "max_new_tokens": 5})
    return HFEngine(cfg.model, cfg.data, cfg.generate, serving=serving)


def test_colour_of_unseen_squares_is_learned(colour_model):
    from tuneforge.data.example import Message

    engine = engine_for(colour_model)
    right = sum(engine.chat([Message("user", f"<image>{QUESTION}")], images=[image]) == colour
                for colour, image in held_out())
    assert right >= HELD_OUT - 2, f"{right}/{HELD_OUT} held-out squares named right (chance: {HELD_OUT // 3})"
    assert (colour_model / "preprocessor_config.json").is_file()  # the trained folder loads like the base


def test_the_vision_tower_stayed_frozen(colour_model, tiny_vl_base):
    from safetensors.torch import load_file

    trained, base = load_file(colour_model / "model.safetensors"), load_file(tiny_vl_base / "model.safetensors")
    tower = [k for k in base if ".visual." in k or k.startswith("visual.")]
    assert tower and all((trained[k] == base[k]).all() for k in tower)
    assert any(not (trained[k] == base[k]).all() for k in base if k not in tower)  # the language model trained


@pytest.fixture(scope="module")
def tiny_vl_base() -> Path:
    from tuneforge.model import tiny_vl

    return tiny_vl.ensure()


def test_chat_takes_an_image_command(colour_model, tmp_path):
    colour, image = held_out(seed=2)[1]
    path = tmp_path / "方块.png"
    image.save(path)
    config = write_yaml(tmp_path / "chat.yaml", model_name_or_path=str(colour_model), do_sample=False,
                        max_new_tokens=5)
    result = run_cli("chat", str(config), stdin=f"/image {path}\n{QUESTION}\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Assistant: {colour}" in result.stdout, result.stdout


def test_predict_reads_the_images_of_the_eval_data(colour_model, tmp_path):
    rows = predicted(colour_model, write_squares(tmp_path / "eval", 6, seed=3), "squares", tmp_path)
    assert sum(row["predict"] == row["label"] for row in rows) >= 5, rows


def test_api_takes_image_url_parts(colour_model, tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.serve.api import create_app

    (colour, image), (colour2, image2) = held_out(seed=4)[:2]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    image2.save(tmp_path / "b.png")
    parts = [{"url": url}, {"url": f"file://{tmp_path / 'b.png'}"}, {"url": "https://example.com/a.png"}]
    engine = engine_for(colour_model, serving=True)  # as `tuneforge api` serves: text batched, pictures generated
    with TestClient(create_app(engine, "m")) as api:
        replies = [api.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": part},
                                                      {"type": "text", "text": QUESTION}]}],
            "temperature": 0, "max_tokens": 5}) for part in parts]
        text_only = api.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}],
                                                           "max_tokens": 5})
    engine.close()
    assert text_only.status_code == 200, text_only.text
    assert [r.status_code for r in replies] == [200, 200, 400], [r.text for r in replies]
    assert [r.json()["choices"][0]["message"]["content"] for r in replies[:2]] == [colour, colour2]
    assert "not fetched" in replies[2].json()["error"]["message"]


def test_lora_on_the_language_model_trains(squares, tmp_path):
    from e2e.helpers import log_lines

    out = train_vl(tmp_path, squares, finetuning_type="lora", lora_rank=16, learning_rate=0.01, max_steps=20,
                   logging_steps=5)
    losses = [row["loss"] for row in log_lines(out) if "loss" in row]
    assert losses[-1] < losses[0] * 0.6, losses
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["exclude_modules"] and "visual" in config["exclude_modules"]
    # merged by export, the folder loads with its image processor and answers as base + adapter did
    from tuneforge.config.load import load
    from tuneforge.data.example import Message
    from tuneforge.export.merge import export_model
    from tuneforge.infer.hf import HFEngine

    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny-qwen2-vl", "adapter_name_or_path": str(out),
                        "export_dir": str(tmp_path / "merged"), "do_sample": False, "max_new_tokens": 5})
    export_model(cfg)
    _, image = held_out(seed=6)[0]
    question = [Message("user", f"<image>{QUESTION}")]
    with_adapter = HFEngine(cfg.model, cfg.data, cfg.generate).chat(question, images=[image])
    assert engine_for(tmp_path / "merged").chat(question, images=[image]) == with_adapter


def test_qwen3_vl_trains(squares, tmp_path):
    """The Qwen3-VL family (16-pixel patches, deepstack mergers) through the same path: its loss falls."""
    from e2e.helpers import log_lines

    out = train_vl(tmp_path, squares, model_name_or_path="tuneforge/tiny-qwen3-vl", finetuning_type="full",
                   learning_rate=0.006, max_steps=12, logging_steps=4)
    losses = [row["loss"] for row in log_lines(out) if "loss" in row]
    assert losses[-1] < losses[0] * 0.6, losses


def test_llava_trains_and_answers_about_an_image(squares, tmp_path):
    """LLaVA-1.5's layout (CLIP tower, MLP projector, fixed 4 image tokens at this size): loss falls, and the
    trained folder answers a question about an image."""
    from e2e.helpers import log_lines

    from tuneforge.data.example import Message

    out = train_vl(tmp_path, squares, model_name_or_path="tuneforge/tiny-llava", finetuning_type="full",
                   learning_rate=0.006, max_steps=12, logging_steps=4)
    losses = [row["loss"] for row in log_lines(out) if "loss" in row]
    assert losses[-1] < losses[0] * 0.6, losses
    colour, image = held_out(seed=5)[0]
    assert engine_for(out).chat([Message("user", f"<image>{QUESTION}")], images=[image]) in COLOURS
