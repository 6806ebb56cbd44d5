"""Chat templates: built-in families plus `auto` (the tokenizer's own chat_template)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import DataConfig
from tuneforge.data.example import Example
from tuneforge.data.templates.auto import AutoTemplate
from tuneforge.data.templates.base import Template, Turn
from tuneforge.data.templates.builtin import TEMPLATES

__all__ = ["BoundTemplate", "Template", "Turn", "TEMPLATES", "get_template", "template_for", "template_names"]


def template_names() -> list[str]:
    return sorted(TEMPLATES) + ["auto"]


@dataclass
class BoundTemplate:
    """A template joined to one tokenizer: knows bos/eos strings and the stop token ids."""

    template: Template | AutoTemplate
    tokenizer: Any
    default_system: str | None = None
    enable_thinking: bool | None = True
    images: Any = None  # data/media.py's ImagePlan: a vision template bound to the model's image processor

    @property
    def vision(self) -> Any:
        """The template's VisionStyle (None for text templates)."""
        return getattr(self.template, "vision", None)

    @property
    def name(self) -> str:
        return self.template.name

    @property
    def bos(self) -> str:
        return self.tokenizer.bos_token or ""

    @property
    def eos(self) -> str:
        return self.tokenizer.eos_token or ""

    def stop_strings(self) -> list[str]:
        return [s.replace("{eos}", self.eos) for s in self.template.stop_words if s.replace("{eos}", self.eos)]

    def stop_token_ids(self) -> list[int]:
        ids = []
        for word in self.stop_strings():
            tok = self.tokenizer.convert_tokens_to_ids(word)
            if isinstance(tok, int) and tok != self.tokenizer.unk_token_id:
                ids.append(tok)
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def render(self, example: Example, for_generation: bool = False) -> list[Turn]:
        return self.template.render(example, bos=self.bos, eos=self.eos, default_system=self.default_system,
                                    enable_thinking=self.enable_thinking, for_generation=for_generation)

    def render_text(self, example: Example, for_generation: bool = False) -> str:
        return "".join(t.prompt + t.answer + t.suffix for t in self.render(example, for_generation))


def get_template(name: str | None, tokenizer: Any, *, default_system: str | None = None,
                 enable_thinking: bool | None = True) -> BoundTemplate:
    """Look a template up by name and check that it fits the tokenizer."""
    if name is None:
        name = "auto" if getattr(tokenizer, "chat_template", None) else "default"
    if name == "auto":
        template: Template | AutoTemplate = AutoTemplate(tokenizer)
    elif name in TEMPLATES:
        template = TEMPLATES[name]
    else:
        guess = difflib.get_close_matches(name, template_names(), n=1, cutoff=0.5)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        raise ConfigError(f"unknown template '{name}'{hint} (known: {', '.join(template_names())})")
    bound = BoundTemplate(template, tokenizer, default_system, enable_thinking)
    check_fits(bound)
    return bound


def template_for(data: DataConfig, tokenizer: Any, image_processor: Any = None) -> BoundTemplate:
    """The config's template (name, default_system, enable_thinking) bound to `tokenizer`, and for a vision
    template to the model's image processor (with image_min_pixels/image_max_pixels and the video keys)."""
    bound = get_template(data.template, tokenizer, default_system=data.default_system,
                         enable_thinking=data.enable_thinking)
    if bound.vision is not None and image_processor is not None:
        from tuneforge.data.media import VideoSettings, image_plan

        video = VideoSettings(data.video_fps, data.video_maxlen, data.video_min_pixels, data.video_max_pixels)
        bound.images = image_plan(image_processor, data.image_min_pixels, data.image_max_pixels, video)
    return bound


def check_fits(bound: BoundTemplate) -> None:
    """Every stop word must be one token of this tokenizer, or the model can never emit it."""
    tok = bound.tokenizer
    if any("{eos}" in s for s in bound.template.stop_words) and not tok.eos_token:
        raise ConfigError(f"template '{bound.name}' ends answers with eos but the tokenizer has no eos_token")
    vocab = tok.get_vocab()
    for word in bound.stop_strings():
        if word not in vocab:
            raise ConfigError(f"template '{bound.name}' needs the token {word!r}, which this tokenizer does not "
                              "have; pick the template of the model's family (or template: auto)")
