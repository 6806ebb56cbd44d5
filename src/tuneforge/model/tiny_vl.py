"""Tiny Qwen2-VL and Qwen3-VL models for the multimodal tests and demos: built here, offline, deterministic,
cached.

The tiny model's tokenizer with Qwen-VL's vision tokens added, a random-init model from transformers' config
classes (text: hidden 64, 2 layers; vision: depth 2, merge 2), and a PIL image processor
(`Qwen2VLImageProcessorPil`, which needs no torchvision; Qwen3-VL uses the same class with 16-pixel patches)
saved beside them, so `from_pretrained` on the folder loads everything as it would a real checkpoint.
`model_name_or_path: tuneforge/tiny-qwen2-vl` (or `tuneforge/tiny-qwen2.5-vl`, `tuneforge/tiny-qwen3-vl`,
`tuneforge/tiny-llava`) resolves to this folder.

Qwen2-VL: a 56x56 image is 16 patches of 14 pixels, merged 2x2 into 4 image tokens; images are kept between
56x56 and 112x112 pixels (4 to 16 image tokens), so a test image costs a handful of tokens.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

TINY_VL_NAME = "tuneforge/tiny-qwen2-vl"
TINY_VL_NAMES = {TINY_VL_NAME: "qwen2_vl", "tuneforge/tiny-qwen2.5-vl": "qwen2_5_vl", "tuneforge/tiny-qwen3-vl": "qwen3_vl",
                 "tuneforge/tiny-llava": "llava"}
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
LLAVA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
                "detailed, and polite answers to the user's questions.")
# LLaVA-1.5's vicuna format (as LLaMA-Factory's llava template writes it), images where their parts are
LLAVA_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}{{- '" + LLAVA_SYSTEM.replace("'", "\\'") + " ' -}}"
    "{%- endif -%}"
    "{%- if message['role'] == 'user' -%}{{- 'USER: ' -}}{%- endif -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<image>' -}}{%- else -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'system' -%}{{- ' ' -}}{%- elif message['role'] == 'user' -%}{{- ' ASSISTANT:' -}}"
    "{%- else -%}{{- eos_token -}}{%- endif -%}"
    "{%- endfor -%}"
)


def chat_template(default_system: str) -> str:
    """Qwen-VL's chat format written for the tiny tokenizer: each image content part rendered as the vision
    marker (the processor then repeats <|image_pad|> per image token); Qwen2-VL adds a default system prompt."""
    system = ""
    if default_system:
        system = ("{%- if loop.first and message['role'] != 'system' -%}"
                  "{{- '<|im_start|>system\\n" + default_system + "<|im_end|>\\n' -}}{%- endif -%}")
    return (
        "{%- for message in messages -%}" + system +
        "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
        "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{{- '<|im_end|>\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    )


TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=2048, initializer_range=0.2, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
# arch -> (config class, model class, text extras, vision config, image processor pixels and patch, default system)
ARCHS: dict[str, tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any], str]] = {
    "qwen2_vl": ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration", {},
                 dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2),
                 dict(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14), "You are a helpful assistant."),
    # Qwen2.5-VL: windowed vision attention (one full-attention block), its own get_rope_index with
    # second_per_grid_ts x tokens_per_second spacing a video's temporal positions
    "qwen2_5_vl": ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration", {},
                   dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                        temporal_patch_size=2, out_hidden_size=64, window_size=56, fullatt_block_indexes=[1],
                        tokens_per_second=4),
                   dict(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14), "You are a helpful assistant."),
    "qwen3_vl": ("Qwen3VLConfig", "Qwen3VLForConditionalGeneration", dict(head_dim=16),
                 dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
                      temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=64,
                      deepstack_visual_indexes=[1]),
                 dict(min_pixels=64 * 64, max_pixels=128 * 128, patch_size=16), ""),
    # a 28x28 CLIP tower of 14-pixel patches: 4 patches + CLS, CLS dropped ("default") -> 4 image tokens
    "llava": ("LlavaConfig", "LlavaForConditionalGeneration",
              {"model_type": "qwen2", "head_dim": 16, "rope_parameters": {"rope_type": "default", "rope_theta": 1e4}},
              dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, image_size=28, patch_size=14, projection_dim=32),
              dict(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}), LLAVA_SYSTEM),
}
BUILD_VERSION = "1"


def _key(arch: str) -> str:
    from tuneforge.model import tiny

    template = LLAVA_TEMPLATE if arch == "llava" else chat_template(ARCHS[arch][5])
    spec = {"text": TEXT, "arch": ARCHS[arch], "template": template, "version": BUILD_VERSION,
            "tiny": tiny.ensure().name}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def build(out_dir: str | Path, arch: str = "qwen2_vl") -> Path:
    """Write the tokenizer, image processor and a random-init tiny model of `arch` (fp32 safetensors) into
    out_dir."""
    import torch
    import transformers
    from transformers import AutoTokenizer

    from tuneforge.model import tiny

    config_class, model_class, text_extra, vision, pixels, system = ARCHS[arch]
    tokenizer = AutoTokenizer.from_pretrained(tiny.ensure())
    if arch == "llava":
        tokenizer.add_tokens(["<image>"], special_tokens=True)
        tokenizer.chat_template = LLAVA_TEMPLATE
        ids: dict[str, Any] = {"image_token_index": tokenizer.convert_tokens_to_ids("<image>")}
    else:
        tokenizer.add_tokens(VISION_TOKENS, special_tokens=True)
        tokenizer.chat_template = chat_template(system)
        ids = dict(zip(("vision_start_token_id", "vision_end_token_id", "image_token_id", "video_token_id"),
                       tokenizer.convert_tokens_to_ids(VISION_TOKENS)))
    text = {**TEXT, **text_extra, "vocab_size": len(tokenizer), "bos_token_id": None,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    config = getattr(transformers, config_class)(text_config=text, vision_config=vision, tie_word_embeddings=True,
                                                 **ids)
    config.dtype = "float32"
    torch.manual_seed(0)
    out = tiny.save_model_dir(getattr(transformers, model_class)(config), tokenizer, Path(out_dir))
    image_processor(arch, vision, pixels).save_pretrained(out)
    return out


def image_processor(arch: str, vision: dict[str, Any], pixels: dict[str, Any]) -> Any:
    """The PIL image processor of a tiny `arch` (no torchvision needed)."""
    if arch == "llava":
        from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

        return LlavaImageProcessorPil(**pixels)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(merge_size=vision["spatial_merge_size"],
                                    temporal_patch_size=vision["temporal_patch_size"], **pixels)


def ensure(arch: str = "qwen2_vl") -> Path:
    """The cached tiny `arch` folder, built on first use (a few seconds)."""
    from tuneforge.model import tiny

    # the image processor is written last: a folder without it is an interrupted build
    name = f"tiny-{arch.replace('_', '-')}-{_key(arch)}"
    return tiny.cached(name, lambda path: build(path, arch), marker="preprocessor_config.json")
