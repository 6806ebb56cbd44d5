"""Transformers backend: base model + adapters (not merged), greedy or sampled generation that stops
at the template's stop tokens, optionally streamed or batched.

Served (`serving=True`, the API), concurrent requests go through transformers' continuous batching
(`infer/batching.py`); with settings it cannot batch (beam search, repetition penalty) they take turns
on `model.generate`. Either way `stream()` yields `Piece`s and closing it cancels the generation. A
serving engine answers through `stream()` only: with eager attention (`flash_attn: eager` or
`disabled`) the batching manager runs the model with paged attention, which `generate` does not expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from tuneforge.config.schema import DataConfig, GenerateConfig, ModelConfig
from tuneforge.data.example import Example, Message
from tuneforge.data.templates import template_for
from tuneforge.infer.answer import AnswerDecoder, prompt_ids
from tuneforge.infer.base import Piece, Response
from tuneforge.infer.batching import ContinuousBatcher, batchable, sampling
from tuneforge.infer.stops import StopCutter, cut_at_stop, stop_words
from tuneforge.log import note


class HFEngine:
    backend = "huggingface"

    def __init__(self, model_cfg: ModelConfig, data: DataConfig, generation: GenerateConfig, serving: bool = False):
        import torch

        from tuneforge.model.adapters import load_adapters
        from tuneforge.model.attention import choose_attention
        from tuneforge.model.load import inference_precision, load_model, load_tokenizer
        from tuneforge.model.vision import vision_data

        self.generation_cfg = generation
        self.tokenizer = load_tokenizer(model_cfg)
        image_processor, data = vision_data(model_cfg, data)  # a vision model: its processor and template
        self.template = template_for(data, self.tokenizer, image_processor)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        attention = choose_attention(model_cfg.flash_attn, device, padding_free=False)
        model = load_model(model_cfg, inference_precision(model_cfg, device),
                           attn_implementation=attention.implementation, for_training=False)
        if model_cfg.adapter_name_or_path:
            model = load_adapters(model, model_cfg.adapter_name_or_path, trainable_last=False)
        self.model = model.to(device).eval()
        self.device = device
        # one `generate` at a time: concurrent callers queue here (served requests batch instead, below)
        self.lock = threading.Lock()
        self.batcher: ContinuousBatcher | None = None
        if serving:
            self.batcher = self.start_batching()

    # ------------------------------------------------------------------ serving
    @property
    def model_context(self) -> int | None:
        return getattr(self.model.config.get_text_config(), "max_position_embeddings", None)

    @property
    def context_length(self) -> int | None:
        """Prompt + answer tokens one request may use: the model's context (and what the batching cache holds)."""
        if self.batcher is None:
            return self.model_context
        return min(self.model_context or self.batcher.capacity, self.batcher.capacity)

    def start_batching(self) -> ContinuousBatcher | None:
        why_not = batchable(self.generation_cfg)
        if why_not:
            note(f"serving one request at a time: continuous batching does not support {why_not}")
            return None
        return ContinuousBatcher(self.model, self.generation_cfg, self.template.stop_token_ids(),
                                 self.tokenizer.pad_token_id, self.device, self.model_context or 4096)

    async def stream(self, messages: list[Message], system: str | None = None, tools: str | None = None,
                     **overrides: Any) -> AsyncIterator[Piece]:
        """One served answer, piece by piece (see infer.base.Piece); closing it early cancels the generation."""
        images = overrides.pop("images", None)
        inputs = None
        if images:  # pictures: model.generate with their pixel inputs (the batching manager takes ids only)
            inputs = await asyncio.to_thread(self.prompt_inputs, messages, system, tools, images)
            ids = inputs["input_ids"][0].tolist()
        else:
            ids = await asyncio.to_thread(lambda: prompt_ids(self.tokenizer, self.prompt_text(messages, system, tools)))
        max_new = overrides.get("max_new_tokens") or self.generation_cfg.max_new_tokens
        decoder = AnswerDecoder(self.tokenizer, self.template.stop_token_ids(), stop_words(overrides.get("stop")),
                                max_new, self.generation_cfg.skip_special_tokens, len(ids))
        if self.batcher is not None and inputs is None:
            settings = sampling(self.generation_cfg, len(self.tokenizer), overrides)
            source = self.batcher.tokens(ids, max_new, settings)
        else:
            source = self.one_at_a_time(ids, overrides, inputs)
        async with contextlib.aclosing(source) as chunks:
            async for new in chunks:
                text = decoder.feed(new)
                if text:
                    yield Piece(text)
                if decoder.finished:
                    break
        yield decoder.finish()

    async def one_at_a_time(self, ids: list[int], overrides: dict[str, Any],
                            inputs: dict[str, Any] | None = None) -> AsyncIterator[list[int]]:
        """New token ids from `model.generate` in a worker thread, one request at a time (the lock); when
        the caller stops listening, a stopping criterion ends that generation at its next step. `inputs`:
        the whole model input when it is more than the ids (pictures)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        loop, queue, cancelled = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()

        def hand(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        class Feed(BaseStreamer):
            prompt_seen = False

            def put(self, value: Any) -> None:
                if self.prompt_seen:
                    hand(value.reshape(-1).tolist())
                self.prompt_seen = True

            def end(self) -> None:
                hand(None)

        class Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancelled.is_set()

        def work() -> None:
            try:
                with self.lock, torch.inference_mode():
                    model_inputs = inputs or dict(
                        input_ids=torch.tensor([ids], device=self.device),
                        attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.device))
                    self.model.generate(**model_inputs, streamer=Feed(),
                                        stopping_criteria=StoppingCriteriaList([Cancel()]),
                                        **self.generation_kwargs(**overrides))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                hand(exc)
                hand(None)

        threading.Thread(target=work, daemon=True).start()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()

    # ------------------------------------------------------------------ prompts
    def prompt_text(self, messages: list[Message], system: str | None = None, tools: str | None = None) -> str:
        return self.template.render_text(Example(messages=messages, system=system, tools=tools), for_generation=True)

    def prompt_inputs(self, messages: list[Message], system: str | None, tools: str | None, images: list[Any] | None,
                      n: int = 1) -> Any:
        """The generation inputs of one prompt (n copies): token ids, and with images their pixel inputs."""
        if images:
            from tuneforge.infer.images import image_inputs

            return image_inputs(self.template, messages, system, tools, images, n, self.device, self.model)
        return self.encode([self.prompt_text(messages, system, tools)] * n)

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
        inputs = self.prompt_inputs(messages, system, tools, overrides.pop("images", None), n)
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

        inputs = self.prompt_inputs(messages, system, tools, overrides.pop("images", None))
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
