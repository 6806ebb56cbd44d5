"""A tiny Qwen2-VL for the multimodal tests and demos: built here, offline, deterministic, cached.

The tiny model's tokenizer with Qwen-VL's vision tokens added, a random-init `Qwen2VLForConditionalGeneration`
from transformers' config classes (text: hidden 64, 2 layers; vision: depth 2, embed 32, patch 14, merge 2),
and a PIL image processor (`Qwen2VLImageProcessorPil`, which needs no torchvision) saved beside them, so
`from_pretrained` on the folder loads everything as it would a real checkpoint.
`model_name_or_path: tuneforge/tiny-qwen2-vl` resolves to this folder.

A 56x56 image is 16 patches of 14 pixels, merged 2x2 into 4 image tokens; images are kept between 56x56
and 112x112 pixels (4 to 16 image tokens), so a test image costs a handful of tokens.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

TINY_VL_NAME = "tuneforge/tiny-qwen2-vl"
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
# Qwen2-VL's chat format, written for the tiny tokenizer: a default system prompt, and each image content
# part rendered as the vision marker (the processor then repeats <|image_pad|> per image token).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}{%- endif -%}"
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
VISION = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
              temporal_patch_size=2)
PIXELS = dict(min_pixels=56 * 56, max_pixels=112 * 112)
BUILD_VERSION = "1"


def _key() -> str:
    from tuneforge.model import tiny

    spec = {"text": TEXT, "vision": VISION, "pixels": PIXELS, "template": CHAT_TEMPLATE, "version": BUILD_VERSION,
            "tiny": tiny.ensure().name}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def build(out_dir: str | Path) -> Path:
    """Write the tokenizer, image processor and a random-init tiny Qwen2-VL (fp32 safetensors) into out_dir."""
    import torch
    from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from tuneforge.model import tiny

    tokenizer = AutoTokenizer.from_pretrained(tiny.ensure())
    tokenizer.add_tokens(VISION_TOKENS, special_tokens=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = dict(zip(("vision_start_token_id", "vision_end_token_id", "image_token_id", "video_token_id"),
                   tokenizer.convert_tokens_to_ids(VISION_TOKENS)))
    text = {**TEXT, "vocab_size": len(tokenizer), "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    config = Qwen2VLConfig(text_config=text, vision_config=VISION, tie_word_embeddings=True, **ids)
    config.dtype = "float32"
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    out = tiny.save_model_dir(model, tokenizer, Path(out_dir))
    Qwen2VLImageProcessorPil(patch_size=VISION["patch_size"], merge_size=VISION["spatial_merge_size"],
                             temporal_patch_size=VISION["temporal_patch_size"], **PIXELS).save_pretrained(out)
    return out


def ensure() -> Path:
    """The cached tiny Qwen2-VL folder, built on first use (a few seconds)."""
    from tuneforge.data.dataset import cache_root

    path = cache_root() / "models" / f"tiny-qwen2-vl-{_key()}"
    if not (path / "preprocessor_config.json").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path)
    return path
