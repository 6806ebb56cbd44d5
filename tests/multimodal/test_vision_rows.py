"""Padding-free rows and packed rows of samples with pictures compute what padded batches compute: the per-token
loss and every gradient (vision tower included), for each vision family we train (Qwen2-VL, Qwen2.5-VL, Qwen3-VL:
3-D rope positions per sample; LLaVA: 1-D), on 3 samples with 0, 1 and 2 pictures of different sizes (and for
the families that take videos a fourth with a video and a picture). And a packed run through `tuneforge train`
trains."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from vl import QUESTION, clip_frames, square, train_vl, write_clip, write_squares

TINY = {"qwen2_vl": "tuneforge/tiny-qwen2-vl", "qwen2_5_vl": "tuneforge/tiny-qwen2.5-vl",
        "qwen3_vl": "tuneforge/tiny-qwen3-vl", "llava": "tuneforge/tiny-llava"}
VIDEO_FAMILIES = {"qwen2_vl", "qwen2_5_vl"}  # a fourth sample with a video (Qwen2.5-VL: its seconds per grid)
SIZES = [(56, 56), (77, 131), (200, 90)]  # the second sample's picture; the third's two (one scaled down)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[str]:
    folder, rng = tmp_path_factory.mktemp("图片"), random.Random(3)
    paths = []
    for i, (colour, size) in enumerate(zip(["red", "green", "blue"], SIZES)):
        square(colour, rng).resize(size).save(folder / f"方块{i}.png")
        paths.append(str(folder / f"方块{i}.png"))
    return paths


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava"])
def family(request, pictures):
    """A family's bound template, its 3 encoded samples (0, 1, 2 pictures) and padded vision collator."""
    from tuneforge.config.load import load
    from tuneforge.data.collate import padded_collator
    from tuneforge.data.encode.multimodal import vision_collator
    from tuneforge.data.encoded import batch_encoder
    from tuneforge.data.example import Example, Message
    from tuneforge.data.loader import example_row
    from tuneforge.data.templates import template_for
    from tuneforge.model.load import load_tokenizer
    from tuneforge.model.vision import vision_data

    model = TINY[request.param]
    cfg, _ = load(base={"model_name_or_path": model, "output_dir": "unused", "cutoff_len": 4096})
    processor, data = vision_data(cfg.model, cfg.data)
    template = template_for(data, load_tokenizer(cfg.model), processor)
    examples = [
        Example(messages=[Message("user", "你好，请介绍一下自己。"), Message("assistant", "我是一个看图的小助手。")]),
        Example(messages=[Message("user", f"<image>{QUESTION}"), Message("assistant", "red, on a dark grey ground")],
                images=pictures[:1]),
        Example(messages=[Message("user", f"<image>这两个方块<image>是什么颜色？"), Message("assistant", "绿色和蓝色")],
                images=pictures[1:]),
    ]
    if request.param in VIDEO_FAMILIES:  # a 4-frame clip (2 temporal patches) beside a picture
        clip = write_clip(Path(pictures[0]).with_name("视频.mp4"), clip_frames(["blue", "red"], random.Random(4)))
        examples.append(Example(messages=[Message("user", "先看视频<video>，再看图<image>。哪个颜色先出现？"),
                                          Message("assistant", "蓝色先出现")], images=pictures[:1], videos=[str(clip)]))
    encode = batch_encoder(template, "sft", data)
    samples = []
    for example in examples:
        out = encode({key: [value] for key, value in example_row(example).items()})
        samples.append({key: values[0] for key, values in out.items()})
    assert [len(s["images"]) for s in samples][:3] == [0, 1, 2]
    padded = vision_collator(template, padded_collator(template.tokenizer, "cpu"))
    return SimpleNamespace(cfg=cfg, samples=samples, padded=padded)


def models(cfg):
    """The model as padded vision batches ran it (SDPA with transformers' masks) and as a padding-free run loads it
    (model/kernels.py's attention choice), fp32 on the CPU."""
    import torch

    from tuneforge.model.attention import choose_attention
    from tuneforge.model.load import Precision, load_model

    precision = Precision(torch.float32, False, False, "cpu")
    rows = choose_attention(cfg.model.flash_attn, "cpu", padding_free=True).implementation
    return load_model(cfg.model, precision, attn_implementation="sdpa"), load_model(cfg.model, precision,
                                                                                    attn_implementation=rows)


def token_losses(model, batch):
    """Cross-entropy of every trained token, in batch order (the row's samples are in that order too)."""
    import torch.nn.functional as F

    logits = model(**{key: value for key, value in batch.items() if key != "labels"}).logits
    labels = batch["labels"][:, 1:].flatten()
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels, reduction="none", ignore_index=-100)
    return losses[labels != -100]


def assert_same_training(reference, padded_batch, model, row):
    """Per-token losses and the gradients of their sum equal (rtol 1e-5 in fp32) for every parameter."""
    import torch

    expected, got = token_losses(reference, padded_batch), token_losses(model, row)
    assert len(got) == len(expected) > 20
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    expected.sum().backward()
    got.sum().backward()
    grads = dict(model.named_parameters())
    checked = 0
    for name, param in reference.named_parameters():
        if param.grad is None:  # unused (LLaVA reads its tower's second-to-last layer)
            assert grads[name].grad is None, name
            continue
        # within 1e-5 of the tensor's largest gradient (fp32 sums in another order); the floor: a key projection's
        # bias has no true gradient (softmax ignores it), both are float noise there
        atol = max(1e-5 * param.grad.abs().max().item(), 1e-7)
        torch.testing.assert_close(grads[name].grad, param.grad, rtol=1e-5, atol=atol,
                                   msg=lambda text, name=name: f"{name}: {text}")
        checked += 1
    assert checked >= 20


def test_padding_free_row_equals_the_padded_batch(family):
    from tuneforge.data.collate import VisionRowCollator
    from tuneforge.model.mrope import rope_index

    reference, model = models(family.cfg)
    row = VisionRowCollator(family.padded, rope_index(model))(family.samples)
    lengths = [len(s["input_ids"]) for s in family.samples]
    assert row["input_ids"].shape == (1, sum(lengths))  # one row, no padding
    if family.cfg.model.model_name_or_path.endswith("llava"):
        assert rope_index(model) is None and row["position_ids"].shape == (1, sum(lengths))
    else:  # text positions restarting per sample above the 3-D ones
        assert row["position_ids"].shape == (4, 1, sum(lengths))
        assert row["position_ids"][0, 0].tolist() == [p for n in lengths for p in range(n)]
    assert_same_training(reference, family.padded(family.samples), model, row)


def test_packed_rows_equal_the_padded_batch(family):
    """Packed into 2 rows of at most all-but-the-longest tokens, a row's pictures (and videos) joined in sample
    order, collated as one micro-batch: the padded batch of the same samples in that order."""
    from datasets import Dataset

    from tuneforge.data.collate import VisionRowCollator
    from tuneforge.data.encoded import features
    from tuneforge.data.packing import pack_dataset, pack_lengths
    from tuneforge.model.mrope import rope_index

    samples = family.samples
    lengths = [len(s["input_ids"]) for s in samples]
    groups = [sorted(group) for group in pack_lengths(lengths, sum(lengths) - max(lengths))]
    assert len(groups) == 2 and max(map(len, groups)) > 1
    dataset = Dataset.from_list(samples, features=features("supervised", vision=True))
    rows = list(pack_dataset(dataset, sum(lengths) - max(lengths)))
    for row, group in zip(rows, groups, strict=True):
        for column in ("input_ids", "images", "image_hw", *(("videos", "video_thw") if len(samples) > 3 else ())):
            assert row[column] == [x for i in group for x in samples[i][column]], column
    reference, model = models(family.cfg)
    row = VisionRowCollator(family.padded, rope_index(model))(rows)
    assert_same_training(reference, family.padded([samples[i] for group in groups for i in group]), model, row)


@pytest.mark.parametrize("family", ["qwen2_vl"], indirect=True)
def test_lora_rows_get_the_3d_positions_and_the_padded_gradients(family):
    """Under peft the collator still finds the model's get_rope_index (a run would otherwise train on 1-D positions
    without a word), and the LoRA gradients of the row equal the padded batch's."""
    import torch

    from tuneforge.data.collate import VisionRowCollator
    from tuneforge.model.adapters import apply_method
    from tuneforge.model.mrope import rope_index

    cfg = family.cfg.model_copy(update={"method": family.cfg.method.model_copy(update={"finetuning_type": "lora"})})
    def lora(model):  # the same random adapter on both; lora_B too (peft starts it at zero: lora_A gets no gradient)
        torch.manual_seed(0)
        model = apply_method(model, cfg.method, cfg.model)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)
        return model

    reference, model = (lora(m) for m in models(cfg))
    found = rope_index(model)
    assert found is not None and found.model_class.__name__ == "Qwen2VLModel"
    row = VisionRowCollator(family.padded, found)(family.samples)
    assert_same_training(reference, family.padded(family.samples), model, row)


def test_every_vision_family_is_proven():
    """A family added to model/vision.py must be added to the parity tests above: its batches are padding-free."""
    from tuneforge.model.vision import FAMILIES

    assert set(FAMILIES) == {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava"}


def test_packing_trains_through_tuneforge_train(tmp_path, caplog):
    """`packing: true` on the tiny Qwen2-VL: 96 samples of one picture packed 2 or more to a row of cutoff_len
    tokens, so an epoch takes fewer steps; the loss falls."""
    from e2e.helpers import log_lines

    squares = write_squares(tmp_path / "squares", 96)
    with caplog.at_level("INFO"):
        out = train_vl(tmp_path, squares, packing=True, finetuning_type="full", learning_rate=0.006, max_steps=12,
                       logging_steps=4)
    said = caplog.text
    assert "batches packed rows (samples isolated)" in said, said
    packed = int(said.split("packing: 96 samples -> ")[1].split()[0])
    assert packed <= 48, said
    logged = [row for row in log_lines(out) if "loss" in row]
    losses = [row["loss"] for row in logged]
    assert losses[-1] < losses[0] * 0.6, losses
    assert logged[-1]["epoch"] > 12 * 8 / 96  # more than the epochs 12 steps of unpacked samples would be
