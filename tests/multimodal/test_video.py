"""Videos in the data (Qwen2-VL / Qwen2.5-VL): frames sampled at video_fps and cut into the video processor's
patches (two identical frames are exactly the picture of that frame), ids equal the real chat template with each
video's tokens counted as the processor counts them, bad files are one line, and families that take no videos
say so in one line. Videos are written by the tests with PyAV (lossless ffv1 where pixels are compared)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import assert_one_error_line, hide_from_children, run_cli, write_yaml
from vl import COLOURS, clip_frames, square, write_clip, write_clips

from tuneforge.config.errors import DataError
from tuneforge.config.load import load
from tuneforge.data.dataset import build_datasets
from tuneforge.data.encoded import batch_encoder
from tuneforge.data.example import Example, Message
from tuneforge.data.loader import example_row
from tuneforge.data.media import VideoSettings
from tuneforge.data.templates import template_for
from tuneforge.data.video import read_clip, sample_frames, video_inputs
from tuneforge.model.load import load_tokenizer
from tuneforge.model.vision import vision_data

TRL_QWEN_VL = Path(__import__("trl").__file__).parent / "chat_templates" / "qwen2_5_vl.jinja"


def bound_template(model: str = "tuneforge/tiny-qwen2-vl", **keys):
    cfg, _ = load(base={"model_name_or_path": model, "output_dir": "unused", "cutoff_len": 4096, **keys})
    processor, data = vision_data(cfg.model, cfg.data)
    return template_for(data, load_tokenizer(cfg.model), processor), data


@pytest.fixture(scope="module")
def template():
    return bound_template()


def as_inputs(clip) -> dict:
    return (clip.pixels, clip.frames, clip.height, clip.width, clip.fps)


def test_two_identical_frames_are_exactly_that_frame_as_a_picture(template, tmp_path):
    """The image processor repeats a picture temporal_patch_size times; a video of that frame twice is the same
    patches, the same grid and the same token count (an odd size, resized by the processor's rule)."""
    plan = template[0].images
    frame = square("red", random.Random(3)).resize((131, 77))
    clip = read_clip(plan, str(write_clip(tmp_path / "同一帧.mkv", [frame, frame], codec="ffv1")), "clip")
    picture = plan.picture(frame, "picture")
    assert (clip.frames, clip.height, clip.width, clip.tokens) == (2, picture.height, picture.width, picture.tokens)
    ours = video_inputs(plan, [as_inputs(clip)])
    reference = plan.processor(images=[frame], return_tensors="pt")  # the image processor on the frame itself
    assert ours["video_grid_thw"].tolist() == reference["image_grid_thw"].tolist() == [[1, 6, 10]]
    assert torch.equal(ours["pixel_values_videos"], reference["pixel_values"])


def test_each_pair_of_frames_is_one_temporal_patch(template, tmp_path):
    """Frame 2k is slot 0 and frame 2k+1 slot 1 of temporal patch k, each equal to that frame's picture patches;
    an odd frame count is padded with the last frame."""
    plan = template[0].images
    frames = clip_frames(["red", "green", "blue"], random.Random(4), per_colour=1)
    clip = read_clip(plan, str(write_clip(tmp_path / "三帧.mkv", frames, codec="ffv1")), "clip")
    assert clip.frames == 4 and clip.tokens == 2 * 16 // 4
    out = video_inputs(plan, [as_inputs(clip)])
    assert out["video_grid_thw"].tolist() == [[2, 4, 4]]
    patches = out["pixel_values_videos"].view(2, 16, 3, 2, 14 * 14)
    for index, frame in enumerate(frames + frames[-1:]):
        alone = plan.processor(images=[frame], return_tensors="pt")["pixel_values"].view(16, 3, 2, 14 * 14)
        assert torch.equal(patches[index // 2, :, :, index % 2], alone[:, :, 0])


def _colours(frames) -> list[str]:
    """The nearest colour of each frame's square (the frame's brightest pixel)."""
    names = []
    for frame in frames:
        pixels = np.asarray(frame).reshape(-1, 3).astype(int)
        brightest = pixels[pixels.sum(1).argmax()]
        names.append(min(COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], brightest))))
    return names


def test_frames_are_sampled_at_video_fps_up_to_video_maxlen(tmp_path):
    """10 frames at 10 fps (1 s): video_fps 2 takes frames 0 and 5; a high video_fps takes every frame once;
    video_maxlen caps the count; an animated GIF (PIL) decodes too."""
    rng = random.Random(5)
    frames = [square(colour, rng) for colour in ["red"] * 5 + ["blue"] * 5]
    path = str(write_clip(tmp_path / "十帧.mkv", frames, fps=10, codec="ffv1"))
    two, fps = sample_frames(path, VideoSettings(fps=2), "clip")
    assert fps == 2 and [np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(two, frames[::5])] == [1, 1]
    assert len(sample_frames(path, VideoSettings(fps=50), "clip")[0]) == 10
    assert len(sample_frames(path, VideoSettings(fps=50, maxlen=4), "clip")[0]) == 4
    gif = tmp_path / "动图.gif"
    still = clip_frames(["green", "red", "blue"], rng, per_colour=1)
    still[0].save(gif, save_all=True, append_images=still[1:], duration=500, loop=0)
    decoded, _ = sample_frames(str(gif), VideoSettings(fps=2), "clip")
    assert _colours(decoded) == ["green", "red", "blue"]


def test_video_max_pixels_lowers_the_tokens(tmp_path):
    path = str(write_clip(tmp_path / "大.mp4", [square("red", random.Random(6)).resize((112, 112))] * 4))
    full = read_clip(bound_template()[0].images, path, "clip")
    small = read_clip(bound_template(video_max_pixels=56 * 56)[0].images, path, "clip")
    assert (full.height, full.width, full.tokens) == (112, 112, 2 * 64 // 4)
    assert (small.height, small.width, small.tokens) == (56, 56, 2 * 16 // 4)


# conversations with one video: first, inside Chinese text beside a picture, in the second user turn
PROBES = [
    ([("user", "<video>Which colour comes first?"), ("assistant", "red")], None),
    ([("user", "先看视频<video>，再看图<image>。哪个颜色先出现？"), ("assistant", "蓝色")], "你是一个看视频的助手。"),
    ([("user", "你好"), ("assistant", "你好！"), ("user", "And now? <video>"), ("assistant", "green")], None),
]


def reference_ids(bound, turns, system, video_grids, image_grids) -> list[int]:
    """The real Qwen2.5-VL chat template (trl's copy) on OpenAI-style parts, each placeholder expanded by
    transformers' own Qwen2VLProcessor.replace_video_token / replace_image_token for the given grids."""
    from transformers import Qwen2VLProcessor

    messages = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    for role, text in turns:
        parts = []
        for piece in text.replace("<video>", "\0<video>\0").replace("<image>", "\0<image>\0").split("\0"):
            kind = {"<video>": "video", "<image>": "image"}.get(piece)
            parts += [{"type": kind}] if kind else [{"type": "text", "text": piece}] if piece else []
        messages.append({"role": role, "content": parts})
    text = bound.tokenizer.apply_chat_template(messages, chat_template=TRL_QWEN_VL.read_text(encoding="utf-8"),
                                               tokenize=False)
    fake = SimpleNamespace(image_processor=bound.images.processor, video_processor=bound.images.processor,
                           image_token="<|image_pad|>", video_token="<|video_pad|>")
    for token, grids, expand in (("<|video_pad|>", video_grids, Qwen2VLProcessor.replace_video_token),
                                 ("<|image_pad|>", image_grids, Qwen2VLProcessor.replace_image_token)):
        pieces = text.split(token)
        key = "video_grid_thw" if "video" in token else "image_grid_thw"
        text = pieces[0] + "".join(expand(fake, {key: torch.tensor(grids)}, i) + rest
                                   for i, rest in enumerate(pieces[1:]))
    return bound.tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("probe", range(len(PROBES)))
def test_ids_and_labels_equal_the_chat_template_with_the_video_expanded(template, tmp_path, probe):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    bound, data = template
    turns, system = PROBES[probe]
    rng = random.Random(probe)
    video = write_clip(tmp_path / "视频.mp4", [square("red", rng).resize((130, 78))] * 3, fps=2)  # 3 frames -> 4
    image = tmp_path / "图.png"
    square("blue", rng).save(image)
    example = Example(messages=[Message(r, t) for r, t in turns], system=system, source="probe",
                      videos=[str(video)], images=[str(image)] * sum(t.count("<image>") for _, t in turns))
    out = batch_encoder(bound, "sft", data)({k: [v] for k, v in example_row(example).items()})
    size = bound.images.processor.size
    height, width = smart_resize(78, 130, 28, size["shortest_edge"], size["longest_edge"])  # within video limits
    video_grid = [[math.ceil(3 / 2), height // 14, width // 14]]
    ids = reference_ids(bound, turns, system, video_grid, [[1, 4, 4]] * len(example.images))
    assert out["input_ids"][0] == ids and out["video_thw"][0] == [4, height, width]
    answers = [t for role, text in turns if role == "assistant"
               for t in bound.tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"]]
    assert [t for t in out["labels"][0] if t != -100] == answers  # the answers only: video tokens never train
    video_id = bound.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert out["input_ids"][0].count(video_id) == 2 * height // 14 * width // 14 // 4


QWEN3_PROBES = [
    ([("user", "<video>哪个颜色先出现？"), ("assistant", "red")], None),
    ([("user", "Look: <video> and say"), ("assistant", "蓝色")], "你是一个看视频的助手。"),
    ([("user", "你好"), ("assistant", "你好！"), ("user", "<video>And now?"), ("assistant", "green")], None),
]


def qwen3_reference_ids(bound, turns, system, grid, fps, indices) -> list[int]:
    """The real Qwen3-VL chat template (trl's copy), then Qwen3VLProcessor's own steps: the template's
    <|vision_start|><|video_pad|><|vision_end|> collapsed to the video token, which replace_video_token writes as
    every frame pair's "<t seconds>" (from the sampled frames' indices and the video's fps) and tokens."""
    from transformers import Qwen3VLProcessor
    from transformers.video_utils import VideoMetadata

    messages = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    for role, text in turns:
        parts = [{"type": "video"} if piece == "<video>" else {"type": "text", "text": piece}
                 for piece in text.replace("<video>", "\0<video>\0").split("\0") if piece]
        messages.append({"role": role, "content": parts})
    jinja = (TRL_QWEN_VL.parent / "qwen3_vl.jinja").read_text(encoding="utf-8")
    text = bound.tokenizer.apply_chat_template(messages, chat_template=jinja, tokenize=False)
    fake = SimpleNamespace(video_processor=bound.images.processor, video_token="<|video_pad|>",
                           vision_start_token="<|vision_start|>", vision_end_token="<|vision_end|>")
    fake._calculate_timestamps = lambda *args: Qwen3VLProcessor._calculate_timestamps(fake, *args)
    inputs = {"video_grid_thw": torch.tensor([grid]),
              "video_metadata": [VideoMetadata(total_num_frames=len(indices), fps=fps, frames_indices=indices)]}
    text = text.replace("<|vision_start|><|video_pad|><|vision_end|>", "<|video_pad|>")
    text = text.replace("<|video_pad|>", Qwen3VLProcessor.replace_video_token(fake, inputs, 0))
    return bound.tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("probe", range(len(QWEN3_PROBES)))
def test_qwen3_vl_ids_equal_its_processor_with_frame_timestamps(tmp_path, probe):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    bound, data = bound_template("tuneforge/tiny-qwen3-vl")
    turns, system = QWEN3_PROBES[probe]
    video = write_clip(tmp_path / "视频.mp4", [square("red", random.Random(probe)).resize((130, 78))] * 5, fps=2)
    example = Example(messages=[Message(r, t) for r, t in turns], system=system, source="probe", videos=[str(video)])
    out = batch_encoder(bound, "sft", data)({k: [v] for k, v in example_row(example).items()})
    size = bound.images.processor.size
    height, width = smart_resize(78, 130, 32, size["shortest_edge"], size["longest_edge"])  # 16-pixel patches
    grid = [3, height // 16, width // 16]  # 5 frames at 2 fps, all sampled, padded to 6
    assert out["input_ids"][0] == qwen3_reference_ids(bound, turns, system, grid, 2.0, [0, 1, 2, 3, 4])
    assert out["video_thw"][0] == [6, height, width]
    text = bound.tokenizer.decode(out["input_ids"][0])  # pairs: frames 0-1, 2-3, 4 and its padding copy
    assert [text.count(f"<{t} seconds><|vision_start|>") for t in ("0.2", "1.2", "2.0")] == [1, 1, 1]


def test_qwen3_vl_trains_on_a_timestamped_video_batch(tmp_path):
    """The tiny Qwen3-VL takes the collated batch (its forward splits the video grid into frame pairs, which
    must match the timestamped blocks of video tokens) and its language model gets a gradient."""
    import transformers

    from tuneforge.model import tiny_vl

    bound, data = bound_template("tuneforge/tiny-qwen3-vl")
    batch = video_batch(bound, data, write_clip(tmp_path / "v.mp4", clip_frames(["red", "blue"], random.Random(2))))
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4]]  # 4 frames of 64x64: 4x4 patches of 16 pixels
    model = transformers.Qwen3VLForConditionalGeneration.from_pretrained(tiny_vl.ensure("qwen3_vl"))
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and model.lm_head.weight.grad.abs().sum() > 0


def test_truncation_never_cuts_a_video(template, tmp_path):
    """Videos at both ends of a long prompt: the text between them is cut first; once none is left to cut the
    sample is dropped, never fed with part of a video's tokens. A video alone above cutoff_len is one line."""
    bound, data = template
    video = str(write_clip(tmp_path / "v.mp4", [square("red", random.Random(1))] * 4))  # 2x4x4 patches: 8 tokens
    example = Example(messages=[Message("user", "<video>" + "很长的问题 " * 30 + "<video>"),
                                Message("assistant", "red " * 5)], videos=[video, video], source="long")
    row = {k: [v] for k, v in example_row(example).items()}
    video_id = bound.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    samples = {cutoff: batch_encoder(bound, "sft", data.model_copy(update={"cutoff_len": cutoff}))(row)["input_ids"]
               for cutoff in range(28, 120, 6)}
    assert any(not s for s in samples.values()) and any(s for s in samples.values())
    assert all(not s or (s[0].count(video_id) == 16 and len(s[0]) <= cutoff) for cutoff, s in samples.items())
    assert max(len(s[0]) for s in samples.values() if s) < len(batch_encoder(bound, "sft", data)(row)["input_ids"][0])
    with pytest.raises(DataError, match="long: a video of 4 frames of 56x56 pixels costs 8 tokens.*cutoff_len 8"):
        batch_encoder(bound, "sft", data.model_copy(update={"cutoff_len": 8}))(row)


def video_batch(bound, data, path: Path) -> dict:
    """The collated training batch of one sample with the video at `path`."""
    from tuneforge.data.collate import padded_collator
    from tuneforge.data.encode.multimodal import vision_collator

    example = Example(messages=[Message("user", "<video>?"), Message("assistant", "red")], videos=[str(path)],
                      source="one")
    out = batch_encoder(bound, "sft", data)({k: [v] for k, v in example_row(example).items()})
    return vision_collator(bound, padded_collator(bound.tokenizer, "cpu"))([{key: out[key][0] for key in out}])


def test_truncation_keeps_qwen3_vl_frame_times_whole(tmp_path):
    """A cut that would fit between two frame pairs (inside "<t seconds>") slides elsewhere or drops the sample:
    every kept sample has each frame pair's time text whole, before its <|vision_start|>."""
    bound, data = bound_template("tuneforge/tiny-qwen3-vl")
    video = str(write_clip(tmp_path / "v.mp4", [square("red", random.Random(1))] * 6))  # 3 pairs of 4 tokens
    example = Example(messages=[Message("user", "数一数 " * 12 + "<video>" + "再数 " * 12),
                                Message("assistant", "red " * 3)], videos=[video], source="long")
    row = {k: [v] for k, v in example_row(example).items()}
    full = batch_encoder(bound, "sft", data)(row)["input_ids"][0]
    stamps = [f"<{t} seconds><|vision_start|>" for t in ("0.2", "1.2", "2.2")]
    kept = []
    for cutoff in range(len(full) - 12, len(full)):
        ids = batch_encoder(bound, "sft", data.model_copy(update={"cutoff_len": cutoff}))(row)["input_ids"]
        if ids:
            kept.append(bound.tokenizer.decode(ids[0]))
    assert kept and all(text.count(stamp) == 1 for text in kept for stamp in stamps)


def test_a_batch_has_the_video_inputs_and_token_types(template, tmp_path):
    bound, data = template
    batch = video_batch(bound, data, write_clip(tmp_path / "v.mp4", clip_frames(["red", "blue"], random.Random(2))))
    video_id = bound.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4]] and batch["pixel_values_videos"].shape == (32, 1176)
    assert batch["second_per_grid_ts"].tolist() == [1.0]  # 2 frames per patch at 2 frames per second
    assert torch.equal(batch["mm_token_type_ids"] == 2, batch["input_ids"] == video_id)
    assert int((batch["mm_token_type_ids"] == 2).sum()) == 8


def test_qwen2_5_vl_trains_on_the_batch_with_its_time_positions(template, tmp_path):
    """The tiny Qwen2.5-VL (`tuneforge/tiny-qwen2.5-vl`: the tiny Qwen2-VL's tokenizer and vision tokens) takes
    the collated batch and its gradient flows; second_per_grid_ts (2 frames / 2 fps = 1 s per temporal patch) spaces
    its temporal positions by tokens_per_second; generation passes it to Qwen2.5-VL, whose forward names it, and
    not to Qwen2-VL."""
    import transformers

    from tuneforge.infer.images import model_takes
    from tuneforge.model import tiny_vl

    bound, data = template
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_vl.ensure("qwen2_5_vl"))
    assert bound.tokenizer.get_vocab() == transformers.AutoTokenizer.from_pretrained(
        tiny_vl.ensure("qwen2_5_vl")).get_vocab()
    batch = video_batch(bound, data, write_clip(tmp_path / "v.mp4", clip_frames(["red", "blue"], random.Random(2))))
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and model.lm_head.weight.grad.abs().sum() > 0
    positions, _ = model.model.get_rope_index(
        input_ids=batch["input_ids"], mm_token_type_ids=batch["mm_token_type_ids"],
        video_grid_thw=batch["video_grid_thw"], second_per_grid_ts=batch["second_per_grid_ts"])
    temporal = positions[0, 0][batch["mm_token_type_ids"][0] == 2].unique()
    assert (temporal - temporal[0]).tolist() == [0, 4]  # tokens_per_second 4 x 1 s per temporal patch
    assert model_takes(model, "second_per_grid_ts")
    assert not model_takes(transformers.Qwen2VLForConditionalGeneration, "second_per_grid_ts")


@pytest.fixture
def clips(tmp_path) -> Path:
    return write_clips(tmp_path / "数据", 3)


def rewrite(folder: Path, change) -> None:
    path = folder / "clips.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    change(rows)
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")


@pytest.mark.parametrize("case, needles", [
    ("count", ["clips.json record 1", "1 <video> placeholder", "2 files in 'videos'"]),
    ("missing", ["clips.json record 2", "视频/nope.mp4", "does not exist"]),
    ("unreadable", ["clips.json record 0", "cannot read video", "bad.mp4"]),
    ("no frames", ["clips.json record 0", "empty.mkv", "no frame that can be decoded"]),
])
def test_video_mistakes_are_one_line(clips, tmp_path, case, needles):
    import av

    if case == "count":
        rewrite(clips, lambda rows: rows[1].update(videos=["视频/0.mp4", "视频/1.mp4"]))
    elif case == "missing":
        rewrite(clips, lambda rows: rows[2].update(videos=["视频/nope.mp4"]))
    elif case == "unreadable":
        (clips / "视频" / "bad.mp4").write_bytes(b"not a video at all" * 10)
        rewrite(clips, lambda rows: rows[0].update(videos=["视频/bad.mp4"]))
    else:
        with av.open(str(clips / "视频" / "empty.mkv"), "w") as container:  # a video stream, no frame in it
            stream = container.add_stream("ffv1", rate=2)
            stream.width = stream.height = 56
            container.start_encoding()
        rewrite(clips, lambda rows: rows[0].update(videos=["视频/empty.mkv"]))
    config = write_yaml(tmp_path / "c.yaml", model_name_or_path="tuneforge/tiny-qwen2-vl", template="qwen2_vl",
                        dataset="clips",
                        dataset_dir=str(clips), cutoff_len=128)
    assert_one_error_line(run_cli("data", "check", str(config)), *needles)


def test_without_pyav_a_video_names_the_extra(clips, tmp_path, monkeypatch):
    hide_from_children("av", tmp_path, monkeypatch)
    config = write_yaml(tmp_path / "c.yaml", model_name_or_path="tuneforge/tiny-qwen2-vl", template="qwen2_vl",
                        dataset="clips",
                        dataset_dir=str(clips), cutoff_len=128)
    assert_one_error_line(run_cli("data", "check", str(config)), "clips.json record 0", "PyAV",
                          "pip install 'tuneforge[video]'")


def test_llava_refuses_videos_in_one_line(clips):
    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny-llava", "dataset": "clips", "dataset_dir": str(clips),
                        "output_dir": "unused", "cutoff_len": 128})
    processor, data = vision_data(cfg.model, cfg.data)
    with pytest.raises(DataError, match=r"record 0: has videos, but template 'llava' \(LLaVA-1.5\) takes images only; "
                                        r"videos are supported for Qwen2-VL / Qwen2.5-VL \(template qwen2_vl\) and "
                                        r"Qwen3-VL \(qwen3_vl, qwen3_vl_nothink\)"):
        build_datasets(data, template_for(data, load_tokenizer(cfg.model), processor), "sft")


def test_videos_with_a_text_template_name_the_video_template(clips):
    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny-qwen2-vl", "dataset": "clips", "template": "qwen",
                        "dataset_dir": str(clips), "output_dir": "unused", "cutoff_len": 128})
    processor, data = vision_data(cfg.model, cfg.data)
    with pytest.raises(DataError, match="has videos, but template 'qwen' is a text template; use a video template"):
        build_datasets(data, template_for(data, load_tokenizer(cfg.model), processor), "sft")


def test_data_check_reports_videos_and_frames_are_cached(clips, tmp_path):
    from rich.console import Console

    from tuneforge.cli.data import run_check

    config = write_yaml(tmp_path / "c.yaml", model_name_or_path="tuneforge/tiny-qwen2-vl", template="qwen2_vl",
                        dataset="clips",
                        dataset_dir=str(clips), cutoff_len=128)
    console = Console(record=True, width=400)
    run_check(config, [], 0, console=console)
    text = console.export_text()
    assert ("videos: 3 in 3 samples (at most 1 per sample); frames per video: min 4, median 4, max 4 (video_fps 2.0, "
            "video_maxlen 128); frame sizes 56x56 to 56x56 pixels; tokens per video: min 8, median 8, max 8 (24 in all)"
            in text) and "images:" not in text  # no picture line for data with videos only
    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny-qwen2-vl", "dataset": "clips", "output_dir": "unused",
                        "dataset_dir": str(clips), "cutoff_len": 128})
    processor, data = vision_data(cfg.model, cfg.data)
    again = build_datasets(data, template_for(data, load_tokenizer(cfg.model), processor), "sft")
    assert again.from_cache and again.train[0]["video_thw"] == [4, 56, 56] and len(again.train[0]["videos"][0]) == \
        4 * 56 * 56 * 3
    fewer = bound_template(video_maxlen=2, dataset="clips", dataset_dir=str(clips))
    other = build_datasets(fewer[1], fewer[0], "sft")  # another sampling rule: encoded again, not the cache
    assert not other.from_cache and other.train[0]["video_thw"] == [2, 56, 56]
