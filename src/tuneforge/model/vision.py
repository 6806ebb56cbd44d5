"""Vision-language models: which families we train, loading them with their image processor, and what stays
frozen (`freeze_vision_tower`, `freeze_multi_modal_projector`, `freeze_language_model`, LLaMA-Factory's keys).

A family is known by its config's `model_type`; its parts by parameter names: the vision tower, the
projector that turns vision features into language-model embeddings, and the language model (with its
head). LoRA goes only where training is allowed: a frozen part is excluded from the targets (peft's
`exclude_modules`), so `lora_target: all` never wraps the vision tower unless freeze_vision_tower is false.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import DataConfig, ModelConfig


@dataclass(frozen=True)
class VisionParts:
    tower: str  # regex on parameter/module names: the vision encoder (the projector inside it excepted)
    projector: str  # regex: the projector (vision features -> language embeddings)
    template: str  # the built-in template of the family


_QWEN_VL = VisionParts(tower=r"(^|\.)visual\.", projector=r"(^|\.)visual\.(merger|deepstack_merger_list)(\.|$)",
                       template="qwen2_vl")
FAMILIES: dict[str, VisionParts] = {
    "qwen2_vl": _QWEN_VL,
    "qwen2_5_vl": _QWEN_VL,
    "qwen3_vl": VisionParts(_QWEN_VL.tower, _QWEN_VL.projector, template="qwen3_vl_nothink"),
    "llava": VisionParts(tower=r"(^|\.)vision_tower\.", projector=r"(^|\.)multi_modal_projector(\.|$)",
                         template="llava"),
}


def is_vision_config(config: Any) -> bool:
    return getattr(config, "vision_config", None) is not None


def vision_parts(config: Any) -> VisionParts | None:
    """The parts of a vision-language model (None for a text model); a vision family we do not train is
    refused in one line naming those we do."""
    if not is_vision_config(config):
        return None
    model_type = getattr(config, "model_type", "?")
    if model_type not in FAMILIES:
        raise ConfigError(f"model type {model_type} is a vision-language model tuneforge does not train yet "
                          f"(supported: {', '.join(FAMILIES)})")
    return FAMILIES[model_type]


def part_of(name: str, parts: VisionParts) -> str:
    """'projector', 'tower' or 'language' for a parameter or module name."""
    if re.search(parts.projector, name):
        return "projector"
    if re.search(parts.tower, name):
        return "tower"
    return "language"


def frozen_parts(m: ModelConfig) -> set[str]:
    flags = {"tower": m.freeze_vision_tower, "projector": m.freeze_multi_modal_projector,
             "language": m.freeze_language_model}
    return {part for part, frozen in flags.items() if frozen}


def freeze_parts(model: Any, m: ModelConfig, parts: VisionParts) -> None:
    """Turn training off for the parts the config freezes (after the method chose what trains)."""
    frozen = frozen_parts(m)
    if frozen == {"tower", "projector", "language"}:
        raise ConfigError("freeze_vision_tower, freeze_multi_modal_projector and freeze_language_model are all true: "
                          "nothing would train")
    for name, param in model.named_parameters():
        if part_of(name, parts) in frozen:
            param.requires_grad_(False)


def lora_exclude(m: ModelConfig, parts: VisionParts) -> str | None:
    """peft's exclude_modules (a regex) keeping LoRA off the frozen parts."""
    frozen = frozen_parts(m)
    patterns = []
    if "projector" in frozen:
        patterns.append(parts.projector)
    if "tower" in frozen:  # the tower's modules that are not the projector's
        patterns.append(f"(?!.*{parts.projector}){parts.tower}")
    if "language" in frozen:
        patterns.append(rf"^(?!.*{parts.tower}).*$")
    return f".*({'|'.join(patterns)}).*" if patterns else None


def lora_settings(model: Any, m: ModelConfig, parts: VisionParts, linear_names: list[str]) -> dict[str, Any]:
    """What changes in the LoRA config of a vision-language model: `lora_target: all` means the linear layers of
    the parts that train; frozen parts are excluded; an unfrozen projector (its linears are numbered inside a
    Sequential, so a name would also match decoder layers) trains whole and is saved with the adapter."""
    frozen = frozen_parts(m)
    allowed = {name.split(".")[-1] for name, _ in model.named_modules() if part_of(name, parts) not in frozen}
    names = [n for n in linear_names if n in allowed and not n.isdigit()]
    saved = None
    if "projector" not in frozen:
        saved = sorted({name for name, _ in model.named_modules() if re.search(parts.projector + "$", name + ".")
                        and name.split(".")[-1] in ("merger", "deepstack_merger_list")})
    return {"available": names, "exclude_modules": lora_exclude(m, parts), "projector": saved}


def load_image_processor(m: ModelConfig) -> Any:
    """The model's image processor (None for a text model). transformers picks its PIL variant where
    torchvision is missing; a processor that will not load is one line."""
    from transformers import AutoImageProcessor

    from tuneforge.model.load import hub_errors, load_model_config, resolve_model_path

    config = load_model_config(m)
    if vision_parts(config) is None:
        return None

    with hub_errors("image processor", m.model_name_or_path):
        processor = AutoImageProcessor.from_pretrained(resolve_model_path(m.model_name_or_path),
                                                       trust_remote_code=m.trust_remote_code,
                                                       revision=m.model_revision, cache_dir=m.cache_dir)
    if config.model_type == "llava":  # what LlavaProcessor knows, for data/media.py's token count
        processor.patch_size = config.vision_config.patch_size
        processor.num_additional_image_tokens = int(config.vision_config.model_type == "clip_vision_model")  # CLS
        processor.vision_feature_select_strategy = config.vision_feature_select_strategy
    return processor


def vision_data(m: ModelConfig, data: DataConfig) -> tuple[Any, DataConfig]:
    """(the image processor or None, the data settings to encode with). A vision model left on `template:
    auto` (or none) gets its family's built-in template, which writes images the way the model reads them."""
    from tuneforge.log import note
    from tuneforge.model.load import load_model_config

    parts = vision_parts(load_model_config(m))
    if parts is None:
        return None, data
    if data.template in (None, "auto"):
        note(f"vision model: template {parts.template} (the family's built-in template writes its image tokens)")
        data = data.model_copy(update={"template": parts.template})
    return load_image_processor(m), data
