"""Transformers backend: base model + adapters (not merged), greedy or sampled generation that stops
at the template's stop tokens, optionally streamed or batched."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from tuneforge.config.schema import DataConfig, GenerateConfig, ModelConfig
from tuneforge.data.example import Example, Message
from tuneforge.data.templates import template_for
from tuneforge.infer.base import Response
from tuneforge.infer.stops import StopCutter, cut_at_stop, stop_words


class HFEngine:
    backend = "huggingface"

    def __init__(self, model_cfg: ModelConfig, data: DataConfig, generation: GenerateConfig):
        import torch

        from tuneforge.model.adapters import load_adapters
        from tuneforge.model.attention import choose_attention
        from tuneforge.model.load import inference_precision, load_model, load_tokenizer

        self.generation_cfg = generation
        self.tokenizer = load_tokenizer(model_cfg)
        self.template = template_for(data, self.tokenizer)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        attention = choose_attention(model_cfg.flash_attn, device, padding_free=False)
        model = load_model(model_cfg, inference_precision(model_cfg, device),
                           attn_implementation=attention.implementation, for_training=False)
        if model_cfg.adapter_name_or_path:
            model = load_adapters(model, model_cfg.adapter_name_or_path, trainable_last=False)
        self.model = model.to(device).eval()
        self.device = device
        # one generation at a time: concurrent callers (the API server) queue here
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ prompts
    def prompt_text(self, messages: list[Message], system: str | None = None, tools: str | None = None) -> str:
        return self.template.render_text(Example(messages=messages, system=system, tools=tools), for_generation=True)

    def encode(self, texts: list[str]) -> Any:
        """Token tensors of rendered prompts, left-padded (decoder-only batches pad on the left); the
        padding side is passed per call, the tokenizer shared by the API server's threads is not changed."""
        return self.tokenizer(texts, add_special_tokens=False, return_tensors="pt", padding=True,
                              padding_side="left").to(self.device)

    def generation_kwargs(self, **overrides: Any) -> dict[str, Any]:
        g = self.generation_cfg
        do_sample = overrides.pop("do_sample", g.do_sample)
        temperature = overrides.pop("temperature", g.temperature)
        if temperature is not None and temperature <= 1e-5:
            do_sample = False  # temperature 0 means greedy, as in OpenAI's API
        kwargs: dict[str, Any] = dict(max_new_tokens=g.max_new_tokens, do_sample=do_sample,
                                      repetition_penalty=g.repetition_penalty, num_beams=g.num_beams,
                                      eos_token_id=self.template.stop_token_ids(),
                                      pad_token_id=self.tokenizer.pad_token_id)
        if g.num_beams > 1:
            kwargs["length_penalty"] = g.length_penalty
        if do_sample:
            kwargs.update(temperature=temperature, top_p=g.top_p, top_k=g.top_k)
        stop = stop_words(overrides.pop("stop", None))
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=self.tokenizer)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return kwargs

    # ------------------------------------------------------------------ generation
    def generate(self, messages: list[Message], system: str | None = None, tools: str | None = None, n: int = 1,
                 **overrides: Any) -> list[Response]:
        import torch

        stop = stop_words(overrides.get("stop"))
        inputs = self.encode([self.prompt_text(messages, system, tools)] * n)
        kwargs = self.generation_kwargs(**overrides)
        with self.lock, torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        prompt_len = inputs["input_ids"].shape[1]
        stops = set(self.template.stop_token_ids())
        responses = []
        for row in out[:, prompt_len:].tolist():
            ids = [t for t in row if t != self.tokenizer.pad_token_id or t in stops]
            finished = any(t in stops for t in ids)
            if finished:
                ids = ids[:next(i for i, t in enumerate(ids) if t in stops)]
            text = self.tokenizer.decode(ids, skip_special_tokens=self.generation_cfg.skip_special_tokens)
            text, hit_stop = cut_at_stop(text, stop)
            reason = "stop" if finished or hit_stop or len(ids) < kwargs["max_new_tokens"] else "length"
            responses.append(Response(text.strip(), prompt_len, len(ids), reason))
        return responses

    def chat(self, messages: list[Message], system: str | None = None, **overrides: Any) -> str:
        return self.generate(messages, system, **overrides)[0].text

    def stream_chat(self, messages: list[Message], system: str | None = None, tools: str | None = None,
                    **overrides: Any) -> Iterator[str]:
        """Yield answer text as it is generated; the pieces join to what `generate` answers (cut at
        stop strings, which are not yielded, and stripped). Closing the generator early cancels
        generation so the engine is free for the next caller."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        inputs = self.encode([self.prompt_text(messages, system, tools)])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, timeout=600,
                                        skip_special_tokens=self.generation_cfg.skip_special_tokens)
        cancelled = threading.Event()

        class Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancelled.is_set()

        kwargs = dict(**inputs, streamer=streamer, stopping_criteria=StoppingCriteriaList([Cancel()]),
                      **self.generation_kwargs(**overrides))
        failure: list[BaseException] = []

        def work() -> None:
            import torch

            try:
                with self.lock, torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        cutter = StopCutter(stop_words(overrides.get("stop")))
        try:
            for piece in streamer:
                delta = cutter.feed(piece)
                if delta:
                    yield delta
                if cutter.stopped:
                    break
            rest = cutter.finish()
            if rest:
                yield rest
        finally:
            cancelled.set()
            thread.join()
        if failure:
            raise failure[0]

    def batch_generate(self, conversations: list[list[Message]], system: str | None = None, batch_size: int = 8,
                       **overrides: Any) -> list[str]:
        """Greedy/sampled answers for many prompts, `batch_size` at a time (left-padded)."""
        import torch

        kwargs = self.generation_kwargs(**overrides)
        stops = set(self.template.stop_token_ids())
        answers: list[str] = []
        for start in range(0, len(conversations), batch_size):
            chunk = conversations[start:start + batch_size]
            inputs = self.encode([self.prompt_text(c, system) for c in chunk])
            with self.lock, torch.inference_mode():
                out = self.model.generate(**inputs, **kwargs)
            for row in out[:, inputs["input_ids"].shape[1]:].tolist():
                cut = next((i for i, t in enumerate(row) if t in stops), len(row))
                answers.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        return answers
