"""Encoded samples equal what the model's own chat template and processor make of the same conversation;
pixels equal the image processor's on the original file; truncation never cuts into an image."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from vl import QUESTION, square

from tuneforge.config.errors import DataError
from tuneforge.config.load import load
from tuneforge.data.encode.multimodal import encode_vision
from tuneforge.data.encode.tokenize import tokenize_turns_batch
from tuneforge.data.encoded import batch_encoder
from tuneforge.data.example import Example, Message
from tuneforge.data.loader import example_row
from tuneforge.data.media import image_plan
from tuneforge.data.templates import template_for
from tuneforge.model.load import load_tokenizer
from tuneforge.model.vision import vision_data

# (conversation, system) probes: image first, image inside the text, two images, several turns, Chinese
PROBES = [
    ([("user", "<image>" + QUESTION), ("assistant", "red")], None),
    ([("user", "Look: <image> now say it"), ("assistant", "green")], "你是一个看图的助手。"),
    ([("user", "<image><image>Same colour?"), ("assistant", "no")], None),
    ([("user", "<image>这是什么颜色？"), ("assistant", "蓝色"), ("user", "And this? <image>"), ("assistant", "red")],
     None),
]
SIZES = [(56, 56), (77, 131), (200, 90), (40, 40)]  # exact, odd, downscaled by max_pixels, upscaled by min_pixels


# the tiny model of each family -> the processor class whose expansion is the reference
FAMILIES = {"tuneforge/tiny-qwen2-vl": "Qwen2VLProcessor", "tuneforge/tiny-qwen3-vl": "Qwen3VLProcessor",
            "tuneforge/tiny-llava": "LlavaProcessor"}


def bound_template(model: str):
    cfg, _ = load(base={"model_name_or_path": model, "output_dir": "unused", "cutoff_len": 4096})
    processor, data = vision_data(cfg.model, cfg.data)
    return template_for(data, load_tokenizer(cfg.model), processor), cfg.data


@pytest.fixture(scope="module")
def template():
    return bound_template("tuneforge/tiny-qwen2-vl")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    return request.param, bound_template(request.param)


def images_for(tmp_path: Path, count: int) -> list[str]:
    rng, paths = random.Random(count), []
    for i in range(count):
        path = tmp_path / f"图{i}.png"
        square("blue", rng).resize(SIZES[(i + count) % len(SIZES)]).save(path)
        paths.append(str(path))
    return paths


def processor_ids(template, turns, system, paths, processor_class: str = "Qwen2VLProcessor") -> list[int]:
    """The reference: the tokenizer's chat template on OpenAI-style content parts, then the processor's own
    expansion (Qwen2VLProcessor.replace_image_token with the image processor's grid), then the tokenizer."""
    import transformers
    from PIL import Image

    messages = [{"role": "system", "content": system}] if system else []
    for role, text in turns:
        parts = [{"type": "image"} if i % 2 else {"type": "text", "text": piece}
                 for i, piece in enumerate(text.replace("<image>", "\0<image>\0").split("\0")) if piece]
        parts = [{"type": "image"} if p.get("text") == "<image>" else p for p in parts]
        messages.append({"role": role, "content": parts})
    text = template.tokenizer.apply_chat_template(messages, tokenize=False)
    processor = template.images.processor
    if processor_class == "LlavaProcessor":  # LLaVA's processor builds without torchvision: the real call
        from transformers import LlavaProcessor

        llava = LlavaProcessor(processor, template.tokenizer, patch_size=processor.patch_size,
                               vision_feature_select_strategy=processor.vision_feature_select_strategy,
                               num_additional_image_tokens=processor.num_additional_image_tokens)
        images = [Image.open(p) for p in paths] or None
        return llava(text=text, images=images)["input_ids"][0]
    grid = processor(images=[Image.open(p) for p in paths], return_tensors="pt") if paths else None
    fake = SimpleNamespace(image_processor=processor, image_token="<|image_pad|>")
    pieces = text.split("<|image_pad|>")
    expand = getattr(transformers, processor_class).replace_image_token
    joined = pieces[0] + "".join(expand(fake, grid, i) + rest
                                 for i, rest in enumerate(pieces[1:]))
    return template.tokenizer(joined, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("probe", range(len(PROBES)))
def test_ids_equal_chat_template_and_processor(family, tmp_path, probe):
    model, (bound, data) = family
    turns, system = PROBES[probe]
    paths = images_for(tmp_path, sum(text.count("<image>") for _, text in turns))
    example = Example(messages=[Message(r, t) for r, t in turns], system=system, images=paths, source="probe")
    out = batch_encoder(bound, "sft", data)({k: [v] for k, v in example_row(example).items()})
    # the processor's rendering ends with the last answer's newline suffix, as ours does
    assert out["input_ids"][0] == processor_ids(bound, turns, system, paths, FAMILIES[model])
    assert out["image_hw"][0] == [side for p in paths for side in bound.images.size_for(*_hw(p))]
    if model == "tuneforge/tiny-llava":  # one fixed size: the processor's pixel values for the original files
        from PIL import Image

        pictures = [(px, h, w) for px, (h, w) in zip(out["images"][0], zip(*[iter(out["image_hw"][0])] * 2))]
        ours = bound.images.pixel_inputs(pictures)["pixel_values"] if pictures else None
        if ours is not None:
            reference = bound.images.processor(images=[Image.open(p) for p in paths], return_tensors="pt")
            assert (ours - reference["pixel_values"]).abs().max().item() == 0


def _hw(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.height, image.width


def test_token_count_is_the_processors(template):
    """t*h*w / merge^2 from our resize equals what the image processor counts for the same size."""
    plan = template[0].images
    for height, width in [(56, 56), (77, 131), (200, 90), (40, 40), (30, 900)]:
        h, w = plan.size_for(height, width)
        patches = plan.processor.get_number_of_image_patches(height, width, {})
        assert plan.tokens_for(h, w) == patches // plan.merge ** 2


def test_cached_pixels_give_the_processors_pixel_values(template, tmp_path):
    from PIL import Image

    plan = template[0].images
    for i, path in enumerate(images_for(tmp_path, 4)):
        picture = plan.picture(path, f"image {i}")
        ours = plan.pixel_inputs([(picture.pixels, picture.height, picture.width)])
        reference = plan.processor(images=[Image.open(path)], return_tensors="pt")
        assert ours["image_grid_thw"].tolist() == reference["image_grid_thw"].tolist()
        assert (ours["pixel_values"] - reference["pixel_values"]).abs().max().item() == 0


def _turns(bound, example):
    return tokenize_turns_batch(bound.tokenizer, [bound.render(example)])[0]


def test_truncation_cuts_text_not_images(template, tmp_path):
    bound, _ = template
    path = images_for(tmp_path, 1)[0]  # 131x77 -> 140x84: 15 image tokens, right after the system prompt
    picture = bound.images.picture(path, "x")
    long = "<image>" + " ".join(["word"] * 60)
    example = Example(messages=[Message("user", long), Message("assistant", "red " * 10)], images=[path])
    pad = bound.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    full = encode_vision(_turns(bound, example), [picture], pad, 4096, "x")
    cut = encode_vision(_turns(bound, example), [picture], pad, 40, "x")
    assert len(full.input_ids) > 40 and len(cut.input_ids) == 40
    assert cut.input_ids.count(pad) == picture.tokens  # the text was shortened, the image kept whole


def test_a_cut_through_an_image_drops_the_sample(template, tmp_path):
    bound, _ = template
    paths = images_for(tmp_path, 2)
    pictures = [bound.images.picture(p, "x") for p in paths]
    example = Example(messages=[Message("user", "<image>" + " ".join(["word"] * 40) + "<image>"),
                                Message("assistant", "red " * 10)], images=paths)
    pad = bound.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    # images at both ends of the prompt: text in between is cut first; once no text is left to cut, the
    # sample is dropped rather than fed with part of an image's tokens
    samples = {cutoff: encode_vision(_turns(bound, example), pictures, pad, cutoff, "x") for cutoff in range(20, 120)}
    assert any(s is None for s in samples.values()) and any(s is not None for s in samples.values())
    assert all(s is None or s.input_ids.count(pad) == sum(p.tokens for p in pictures) for s in samples.values())
    assert all(len(s.input_ids) <= cutoff for cutoff, s in samples.items() if s is not None)


def test_cutoff_below_one_image_names_the_record(template, tmp_path):
    bound, _ = template
    path = images_for(tmp_path, 1)[0]
    example = Example(messages=[Message("user", "<image>hi"), Message("assistant", "red")], images=[path])
    pad = bound.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    with pytest.raises(DataError, match="record 7: an image of 84x140 pixels costs 15 tokens, which leaves no room in cutoff_len 3"):
        encode_vision(_turns(bound, example), [bound.images.picture(path, "r")], pad, 3, "data.json record 7")
