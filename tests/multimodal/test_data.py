"""Images in the data: LLaMA-Factory's `images` column (ShareGPT and Alpaca), placeholders, paths, and the
one-line errors a user gets for each mistake."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import assert_one_error_line, run_cli, write_yaml
from vl import QUESTION, square, write_squares

from tuneforge.config.errors import DataError
from tuneforge.config.load import load
from tuneforge.data.dataset import build_datasets
from tuneforge.data.loader import load_examples
from tuneforge.data.templates import template_for
from tuneforge.model.load import load_tokenizer
from tuneforge.model.vision import vision_data


def encoded(dataset_dir: Path, **keys):
    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny-qwen2-vl", "dataset": "squares",
                        "dataset_dir": str(dataset_dir), "output_dir": "unused", "cutoff_len": 128, **keys})
    processor, data = vision_data(cfg.model, cfg.data)
    template = template_for(data, load_tokenizer(cfg.model), processor)
    return build_datasets(cfg.data, template, "sft"), template


def rewrite(folder: Path, change) -> None:
    path = folder / "squares.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    change(rows)
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")


@pytest.fixture
def few(tmp_path) -> Path:
    return write_squares(tmp_path / "数据", 3)


def test_images_relative_absolute_and_chinese_paths_load(few):
    rewrite(few, lambda rows: rows[1].update(images=[str(few / "图片" / "1.png")]))  # an absolute path
    data, template = encoded(few)
    assert len(data.train) == 3
    row = data.train[0]
    pad = template.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    # a 56x56 square: 4x4 patches of 14 pixels, merged 2x2 -> 4 image tokens, never trained
    assert row["input_ids"].count(pad) == 4 and row["image_hw"] == [56, 56]
    assert all(label == -100 for tid, label in zip(row["input_ids"], row["labels"]) if tid == pad)
    assert len(row["images"]) == 1 and len(row["images"][0]) == 56 * 56 * 3


def test_alpaca_records_take_images(tmp_path):
    folder = write_squares(tmp_path, 2)
    rows = [{"instruction": f"<image>{QUESTION}", "output": "red", "images": ["图片/0.png"]}]
    (folder / "alpaca.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({"squares": {"file_name": "alpaca.json",
                                                                      "columns": {"images": "images"}}}))
    data, _ = encoded(folder)
    assert len(data.train) == 1 and len(data.train[0]["images"]) == 1


def test_text_records_keep_a_literal_image_tag(tmp_path):
    """A record without an images column is text: "<image>" in it is just text (no count check)."""
    from tuneforge.data.formats import sharegpt
    from tuneforge.data.registry import DatasetSpec

    spec = DatasetSpec("t", "file", "x.json", formatting="sharegpt", tags={"role_tag": "role", "content_tag": "content",
                       "user_tag": "user", "assistant_tag": "assistant"}, columns={"messages": "messages"})
    row = {"messages": [{"role": "user", "content": "what is <image> in HTML?"},
                        {"role": "assistant", "content": "a tag"}]}
    assert sharegpt.convert(row, spec, "sft", "x.json record 0").images == []


@pytest.mark.parametrize("case, needles", [
    ("count", ["squares.json record 1", "1 <image> placeholder", "2 files in 'images'"]),
    ("missing", ["squares.json record 2", "图片/nope.png", "does not exist"]),
    ("unreadable", ["squares.json record 0", "cannot read image", "bad.png"]),
])
def test_data_mistakes_are_one_line(tmp_path, case, needles):
    folder = write_squares(tmp_path / "数据", 3)
    if case == "count":
        rewrite(folder, lambda rows: rows[1].update(images=["图片/0.png", "图片/1.png"]))
    elif case == "missing":
        rewrite(folder, lambda rows: rows[2].update(images=["图片/nope.png"]))
    else:
        (folder / "图片" / "bad.png").write_bytes(b"not a png at all")
        rewrite(folder, lambda rows: rows[0].update(images=["图片/bad.png"]))
    config = write_yaml(tmp_path / "c.yaml", model_name_or_path="tuneforge/tiny-qwen2-vl", template="qwen2_vl",
                        dataset="squares", dataset_dir=str(folder), cutoff_len=128)
    assert_one_error_line(run_cli("data", "check", str(config)), *needles)


def test_cutoff_below_one_image_is_one_line(tmp_path):
    folder = write_squares(tmp_path, 3)
    config = write_yaml(tmp_path / "c.yaml", model_name_or_path="tuneforge/tiny-qwen2-vl", template="qwen2_vl",
                        dataset="squares", dataset_dir=str(folder), cutoff_len=4)
    assert_one_error_line(run_cli("data", "check", str(config)), "costs 4 tokens", "cutoff_len 4",
                          "squares.json record 0")


def test_images_with_a_text_template_are_refused(few):
    with pytest.raises(DataError, match="template 'qwen3_nothink' is a text template"):
        encoded(few, template="qwen3_nothink")


def test_images_for_a_text_model_are_refused(few):
    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny", "dataset": "squares", "dataset_dir": str(few),
                        "output_dir": "unused", "template": "qwen2_vl"})
    processor, data = vision_data(cfg.model, cfg.data)
    assert processor is None
    with pytest.raises(DataError, match="no image processor"):
        build_datasets(cfg.data, template_for(data, load_tokenizer(cfg.model), processor), "sft")


def test_examples_carry_their_image_paths(few):
    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny-qwen2-vl", "dataset": "squares",
                        "dataset_dir": str(few), "output_dir": "unused"})
    examples, _ = load_examples(cfg.data, ["squares"], "sft")
    assert [Path(e.images[0]).name for e in examples] == ["0.png", "1.png", "2.png"]
    assert all(Path(e.images[0]).is_absolute() for e in examples)


def test_image_max_pixels_lowers_the_tokens(tmp_path):
    folder = tmp_path / "big"
    (folder / "图片").mkdir(parents=True)
    square("red", random.Random(0)).resize((112, 112)).save(folder / "图片" / "0.png")
    rows = [{"messages": [{"role": "user", "content": f"<image>{QUESTION}"}, {"role": "assistant", "content": "red"}],
             "images": ["图片/0.png"]}]
    (folder / "squares.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (folder / "dataset_info.json").write_text((write_squares(tmp_path / "x", 1) / "dataset_info.json").read_text())
    full, _ = encoded(folder)
    small, _ = encoded(folder, image_max_pixels=56 * 56)
    assert full.train[0]["image_hw"] == [112, 112] and small.train[0]["image_hw"] == [56, 56]
    assert len(full.train[0]["input_ids"]) - len(small.train[0]["input_ids"]) == 16 - 4


def test_data_check_reports_images_and_the_records_dropped_for_them(tmp_path):
    from rich.console import Console

    from tuneforge.cli.data import run_check

    folder = write_squares(tmp_path / "数据", 6)
    config = write_yaml(tmp_path / "c.yaml", model_name_or_path="tuneforge/tiny-qwen2-vl", template="qwen2_vl",
                        dataset="squares", dataset_dir=str(folder), cutoff_len=24)
    console = Console(record=True, width=400)
    run_check(config, [], 0, console=console)
    text = console.export_text()
    assert "images: " in text and "tokens per image: min 4, median 4, max 4" in text
    assert "padding-free micro-batch at most" in text and "packing: true makes" in text  # as for text data
    dropped = [line for line in text.splitlines() if line.startswith("dropped ")]
    assert dropped and all("squares.json record" in line and "would cut into an image's tokens" in line
                           for line in dropped)


def test_pictures_are_cached_with_the_tokenized_data(few):
    first, _ = encoded(few)
    again, _ = encoded(few)
    assert not first.from_cache and again.from_cache
    assert again.train["images"] == first.train["images"] and again.train["image_hw"] == first.train["image_hw"]
    bigger, _ = encoded(few, image_min_pixels=112 * 112)  # another size rule: encoded again, not the cache
    assert not bigger.from_cache and bigger.train[0]["image_hw"] == [112, 112]

