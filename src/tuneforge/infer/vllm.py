"""vLLM backend (used when `infer_backend: vllm` and vllm is installed): same interface as HFEngine.

Prompts are handed to vLLM as token ids, tokenized here without special tokens as the HF engine
does: the rendered prompt already holds the template's BOS, and vLLM would add a second one to
prompt text (Llama 3, Gemma, Mistral).

LoRA adapters are served through vLLM's LoRARequest without merging; only one adapter is
supported (vLLM does not stack adapters), so several are rejected with a clear message.

Served (`serving=True`, the API), the model runs in vLLM's `AsyncLLMEngine`, which batches concurrent
requests itself and streams tokens; `stream()` aborts a request whose caller stopped listening. Otherwise
(chat, predict) it runs in the offline `LLM`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import DataConfig, GenerateConfig, ModelConfig
from tuneforge.data.example import Example, Message
from tuneforge.data.templates import template_for
from tuneforge.infer.base import Piece, Response, require_vllm
from tuneforge.infer.stops import StopCutter


class VLLMEngine:
    backend = "vllm"

    def __init__(self, model_cfg: ModelConfig, data: DataConfig, generation: GenerateConfig, serving: bool = False):
        vllm = require_vllm()
        from tuneforge.model.load import load_tokenizer, resolve_model_path

        adapters = model_cfg.adapter_name_or_path or []
        if len(adapters) > 1:
            raise ConfigError("infer_backend: vllm serves one adapter; merge the others first (tuneforge export)")
        self.generation_cfg = generation
        self.tokenizer = load_tokenizer(model_cfg)
        self.template = template_for(data, self.tokenizer)
        g = generation
        self.context_length = g.vllm_maxlen
        args = dict(model=resolve_model_path(model_cfg.model_name_or_path),
                    trust_remote_code=model_cfg.trust_remote_code, max_model_len=g.vllm_maxlen,
                    dtype=model_cfg.infer_dtype,  # vLLM reads the same names (auto/float16/...)
                    gpu_memory_utilization=g.vllm_gpu_util, enforce_eager=g.vllm_enforce_eager,
                    enable_lora=bool(adapters), max_lora_rank=g.vllm_max_lora_rank)
        self.llm = None if serving else vllm.LLM(**args)
        self.async_engine = vllm.AsyncLLMEngine.from_engine_args(vllm.AsyncEngineArgs(**args)) if serving else None
        self.lora = None
        if adapters:
            from vllm.lora.request import LoRARequest  # type: ignore[import-not-found]

            self.lora = LoRARequest("default", 1, adapters[0])

    def _params(self, n: int = 1, **overrides: Any) -> Any:
        from vllm import SamplingParams  # type: ignore[import-not-found]

        g = self.generation_cfg
        temperature = overrides.get("temperature", g.temperature if g.do_sample else 0.0)
        return SamplingParams(n=n, temperature=temperature or 0.0, top_p=overrides.get("top_p", g.top_p),
                              top_k=g.top_k if g.top_k > 0 else -1, repetition_penalty=g.repetition_penalty,
                              max_tokens=overrides.get("max_new_tokens") or g.max_new_tokens,
                              stop=overrides.get("stop"), stop_token_ids=self.template.stop_token_ids(),
                              skip_special_tokens=g.skip_special_tokens)

    def prompt_text(self, messages: list[Message], system: str | None = None, tools: str | None = None) -> str:
        return self.template.render_text(Example(messages=messages, system=system, tools=tools), for_generation=True)

    def prompt_ids(self, text: str) -> dict[str, list[int]]:
        """A rendered prompt as vLLM's TokensPrompt: its tokens, no special tokens added."""
        return {"prompt_token_ids": self.tokenizer(text, add_special_tokens=False)["input_ids"]}

    def generate(self, messages: list[Message], system: str | None = None, tools: str | None = None, n: int = 1,
                 **overrides: Any) -> list[Response]:
        prompt = self.prompt_ids(self.prompt_text(messages, system, tools))
        out = self.llm.generate([prompt], self._params(n, **overrides), lora_request=self.lora, use_tqdm=False)[0]
        return [Response(c.text.strip(), len(out.prompt_token_ids), len(c.token_ids), c.finish_reason or "stop")
                for c in out.outputs]

    def chat(self, messages: list[Message], system: str | None = None, **overrides: Any) -> str:
        return self.generate(messages, system, **overrides)[0].text

    def stream_chat(self, messages: list[Message], system: str | None = None, tools: str | None = None,
                    **overrides: Any) -> Iterator[str]:
        # The offline LLM class has no token streaming; yield the whole answer once.
        yield self.generate(messages, system, tools, **overrides)[0].text

    async def stream(self, messages: list[Message], system: str | None = None, tools: str | None = None,
                     **overrides: Any) -> AsyncIterator[Piece]:
        """One served answer, piece by piece; vLLM cuts stop strings, the cutter trims as `generate` does."""
        if self.async_engine is None:
            raise RuntimeError("this vLLM engine was built for chat/predict: create_engine(..., serving=True) serves")
        prompt = self.prompt_ids(self.prompt_text(messages, system, tools))
        request_id = f"tf-{uuid.uuid4().hex}"
        outputs = self.async_engine.generate(prompt, self._params(**overrides), request_id, lora_request=self.lora)
        cutter, sent, final = StopCutter([]), "", None
        try:
            async for out in outputs:
                text = out.outputs[0].text
                piece, sent = cutter.feed(text[len(sent):]), text
                if piece:
                    yield Piece(piece)
                if out.finished:
                    final = out
                    break
        finally:
            await outputs.aclose()
            if final is None:
                await self.async_engine.abort(request_id)
        if final is None:
            raise RuntimeError(f"vLLM ended request {request_id} without finishing it")
        done = final.outputs[0]
        yield Piece(cutter.finish(), Response(done.text.strip(), len(final.prompt_token_ids), len(done.token_ids),
                                              done.finish_reason or "stop"))

    def close(self) -> None:
        shutdown = getattr(self.async_engine, "shutdown", None)
        if shutdown is not None:
            shutdown()

    def batch_generate(self, conversations: list[list[Message]], system: str | None = None, batch_size: int = 8,
                       **overrides: Any) -> list[str]:
        prompts = [self.prompt_ids(self.prompt_text(c, system)) for c in conversations]
        outs = self.llm.generate(prompts, self._params(**overrides), lora_request=self.lora, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outs]
