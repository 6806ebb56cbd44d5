"""Transformers backend: base model + adapters (not merged), greedy or sampled generation that stops
at the template's stop tokens, optionally streamed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.data.example import Example, Message
from tuneforge.data.templates import get_template


class HFEngine:
    def __init__(self, cfg: RunConfig):
        import torch

        from tuneforge.model.adapters import load_adapters
        from tuneforge.model.load import Precision, load_model, load_tokenizer

        self.cfg = cfg
        self.tokenizer = load_tokenizer(cfg.model)
        self.template = get_template(cfg.data.template, self.tokenizer, default_system=cfg.data.default_system,
                                     enable_thinking=cfg.data.enable_thinking)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float32 if device == "cpu" else (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        model = load_model(cfg, Precision(dtype, False, False, device), for_training=False)
        if cfg.model.adapter_name_or_path:
            model = load_adapters(model, cfg.model.adapter_name_or_path, trainable_last=False)
        self.model = model.to(device).eval()
        self.device = device

    def _inputs(self, messages: list[Message], system: str | None) -> Any:
        text = self.template.render_text(Example(messages=messages, system=system), for_generation=True)
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        return ids.to(self.device)

    def _generate_kwargs(self, **overrides: Any) -> dict[str, Any]:
        g = self.cfg.generate
        kwargs: dict[str, Any] = dict(max_new_tokens=g.max_new_tokens, do_sample=g.do_sample,
                                      repetition_penalty=g.repetition_penalty,
                                      eos_token_id=self.template.stop_token_ids(),
                                      pad_token_id=self.tokenizer.pad_token_id)
        if g.do_sample:
            kwargs.update(temperature=g.temperature or 1e-5, top_p=g.top_p, top_k=g.top_k)
        kwargs.update(overrides)
        return kwargs

    def chat(self, messages: list[Message], system: str | None = None, **overrides: Any) -> str:
        import torch

        inputs = self._inputs(messages, system)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **self._generate_kwargs(**overrides))
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    def stream_chat(self, messages: list[Message], system: str | None = None, **overrides: Any) -> Iterator[str]:
        from threading import Thread

        from transformers import TextIteratorStreamer

        inputs = self._inputs(messages, system)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(**inputs, streamer=streamer, **self._generate_kwargs(**overrides))
        thread = Thread(target=self.model.generate, kwargs=kwargs, daemon=True)
        thread.start()
        yield from streamer
        thread.join()
