"""Many requests at once on the transformers backend: transformers' own continuous batching
(`model.init_continuous_batching()` -> `ContinuousBatchingManager`, transformers >= 5.x), which runs one
background thread that puts every active request's next token into the same forward pass and admits new
requests between steps. It runs on CPU and on a peft-wrapped model (the LoRA layers are inside the model
it drives), so the API server uses it whenever the generation settings allow (see `batchable`).

What the manager fixes per manager and not per request, and how it is met here:
- sampling: the manager samples (`do_sample=True`) with per-request temperature / top_k / top_p, and a
  greedy request asks for `top_k=1` (only the most likely token is left to draw);
- stop strings are not the manager's: the caller watches the text and cancels the request;
- n choices are n requests (prompt blocks are shared by the cache's prefix sharing).
Repetition penalty and beam search have no batched form there, so with those settings the engine
serves one request at a time instead (`HFEngine` falls back; a note says so).

On CPU the manager would size its KV cache from the machine's whole RAM (it treats RAM as an
accelerator's free memory), so the cache is sized here: enough tokens for one request of the full
context (capped) and small pages, so that many short chats fit at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import uuid
from collections.abc import AsyncIterator
from typing import Any

from tuneforge.config.schema import GenerateConfig

CPU_PAGE_TOKENS = 64
CPU_CACHE_TOKENS = (16384, 32768)  # at least / at most, on CPU
CPU_BATCH_TOKENS = 512  # tokens per forward step (longer prompts are prefilled in chunks)
GREEDY_BELOW = 1e-5  # temperature 0 means greedy, as in OpenAI's API


def batchable(generation: GenerateConfig) -> str | None:
    """Why these generation settings cannot be batched (None when they can)."""
    if generation.num_beams > 1:
        return "num_beams > 1 (beam search)"
    if generation.repetition_penalty != 1.0:
        return "repetition_penalty != 1.0"
    return None


def sampling(generation: GenerateConfig, vocab_size: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Per-request sampling settings for the manager, from the config and the request's overrides."""
    temperature = overrides.get("temperature", generation.temperature)
    do_sample = overrides.get("do_sample", generation.do_sample)
    if not do_sample or temperature is None or temperature <= GREEDY_BELOW:
        return {"temperature": 1.0, "top_k": 1, "top_p": 1.0}
    top_k = generation.top_k if generation.top_k > 0 else vocab_size
    top_p = overrides.get("top_p", generation.top_p)
    return {"temperature": float(temperature), "top_k": int(top_k), "top_p": float(top_p)}


def cache_config(device: str, context_length: int) -> dict[str, Any]:
    """ContinuousBatchingConfig sizes: explicit on CPU (see the module's docstring), the manager's own
    (from free accelerator memory) elsewhere."""
    if device != "cpu":
        return {}
    low, high = CPU_CACHE_TOKENS
    tokens = min(max(context_length, low), high)
    return {"page_size": CPU_PAGE_TOKENS, "num_blocks": math.ceil(tokens / CPU_PAGE_TOKENS),
            "max_batch_tokens": CPU_BATCH_TOKENS}


class ContinuousBatcher:
    """One continuous-batching manager over the engine's model; `tokens()` streams one request."""

    def __init__(self, model: Any, generation: GenerateConfig, stop_ids: list[int], pad_id: int | None,
                 device: str, context_length: int):
        from transformers import ContinuousBatchingConfig, GenerationConfig

        # Placeholders that make the manager build its temperature/top-k/top-p processors; every
        # request sends its own values (`sampling`).
        config = GenerationConfig(do_sample=True, temperature=0.7, top_k=50, top_p=0.9, eos_token_id=stop_ids,
                                  pad_token_id=pad_id, max_new_tokens=generation.max_new_tokens)
        batching = ContinuousBatchingConfig(per_request_processors=True, **cache_config(device, context_length))
        self.model, self.config, self.batching, self.stop_ids = model, config, batching, stop_ids
        self.active: set[str] = set()  # requests being streamed now
        self.cancelled = 0  # requests cancelled before they finished (their caller stopped listening)
        self.manager: Any = None
        self.start()

    def start(self) -> None:
        self.manager = self.model.init_continuous_batching(generation_config=self.config,
                                                           continuous_batching_config=self.batching)
        self.manager.warmup()  # builds the cache now (and captures CUDA graphs where they are used)
        self.manager.start()

    @property
    def capacity(self) -> int:
        """Tokens (prompt + answer) one request may use: what the cache holds."""
        return int(self.manager.batch_processor.cache.max_tokens_read)

    async def tokens(self, ids: list[int], max_new_tokens: int, settings: dict[str, Any]) -> AsyncIterator[list[int]]:
        """The request's new token ids as they are generated; closing the iterator early cancels it."""
        if not self.manager.is_running():  # a failed step stops the manager's thread: start a fresh one
            self.start()
        self.drop_orphans()
        request_id = f"tf-{uuid.uuid4().hex}"
        outputs: asyncio.Queue[Any] = asyncio.Queue()
        self.manager.register_result_handler(request_id, outputs.put_nowait)
        added = self.manager.add_request(ids, request_id=request_id, max_new_tokens=max_new_tokens, streaming=True,
                                         eos_token_id=self.stop_ids, **settings)
        if added is None:
            raise RuntimeError("the batching manager is stopping and takes no new requests")
        self.active.add(request_id)
        seen, finished = 0, False
        try:
            while not finished:
                output = await outputs.get()
                if output.error:
                    raise RuntimeError(output.error)
                finished = output.is_finished()
                new, seen = output.generated_tokens[seen:], len(output.generated_tokens)
                if new:
                    yield new
        finally:
            self.active.discard(request_id)
            if not finished:
                self.cancelled += 1
                self.manager.cancel_request(request_id)
                self.manager.output_router.result_handlers.pop(request_id, None)

    def held(self) -> int:
        """Requests the manager still holds: queued, waiting for cache or generating."""
        processor = self.manager.batch_processor
        if processor is None:
            return 0
        scheduler = processor.scheduler
        return self.manager.input_queue.qsize() + len(scheduler.active_requests) + len(scheduler.waiting_requests)

    def drop_orphans(self) -> None:
        """Outputs that reached a cancelled request after it stopped listening land in the manager's shared
        queue, which nothing here reads: empty it."""
        shared = self.manager.output_router.output_queue
        with contextlib.suppress(queue.Empty):
            while True:
                shared.get_nowait()

    def close(self, timeout: float | None = 10) -> None:
        """Stop the manager's thread (requests still generating are failed)."""
        if self.manager is not None and self.manager.is_running():
            self.manager.stop(block=timeout is not None, timeout=timeout, hard_stop=True)
