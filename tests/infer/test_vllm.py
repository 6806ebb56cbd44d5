"""The vLLM engine without vLLM: a stand-in `vllm` module records what the engine hands to `LLM`, and
to `AsyncLLMEngine` when it serves."""

from __future__ import annotations

import asyncio
import sys
import types
from dataclasses import dataclass, field

import pytest

from tuneforge.data.example import Message

BOS = "<|endoftext|>"  # the tiny tokenizer's token, made its BOS below


@pytest.fixture
def bos_tokenizer(monkeypatch):
    """The tiny tokenizer with a BOS that it adds to text, as Llama 3's, Gemma's and Mistral's do."""
    from tokenizers.processors import TemplateProcessing

    from tuneforge.model import load as model_load

    real = model_load.load_tokenizer

    def load_tokenizer(cfg):
        tok = real(cfg)
        tok.bos_token = BOS
        tok.backend_tokenizer.post_processor = TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.bos_token_id)])
        return tok

    monkeypatch.setattr(model_load, "load_tokenizer", load_tokenizer)


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str | None = "stop"


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[Completion] = field(default_factory=list)
    finished: bool = True


class FakeLLM:
    """Answers "ok"; like vLLM, text prompts are tokenized with special tokens (a BOS added), token
    prompts are taken as they are."""

    instances: list[FakeLLM] = []

    def __init__(self, model: str, **kwargs):
        self.model, self.kwargs, self.prompts = model, kwargs, []
        FakeLLM.instances.append(self)

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        outs = []
        for prompt in prompts:
            self.prompts.append(prompt)
            ids = prompt["prompt_token_ids"] if isinstance(prompt, dict) else self.tokenizer(prompt)["input_ids"]
            outs.append(RequestOutput(list(ids), [Completion(" ok ", [1, 2]) for _ in range(params.n)]))
        return outs


class SamplingParams:
    def __init__(self, n: int = 1, **kwargs):
        self.n, self.kwargs = n, kwargs


@dataclass
class AsyncEngineArgs:
    model: str
    kwargs: dict = field(default_factory=dict)

    def __init__(self, model: str, **kwargs):
        self.model, self.kwargs = model, kwargs


class FakeAsyncLLMEngine:
    """Like vLLM's: requests run concurrently, outputs are cumulative, `abort` ends one; each answer is
    " ok ok ... " (`params.kwargs["max_tokens"]` words), one word per step."""

    instances: list[FakeAsyncLLMEngine] = []

    def __init__(self, args: AsyncEngineArgs):
        self.args, self.running, self.peak, self.aborted = args, set(), 0, []
        FakeAsyncLLMEngine.instances.append(self)

    @classmethod
    def from_engine_args(cls, args: AsyncEngineArgs) -> FakeAsyncLLMEngine:
        return cls(args)

    async def generate(self, prompt, params, request_id, lora_request=None):
        self.running.add(request_id)
        self.peak = max(self.peak, len(self.running))
        try:
            words = params.kwargs["max_tokens"]
            for k in range(1, words + 1):
                await asyncio.sleep(0.01)
                text = " ok" * k + (" " if k == words else "")
                finished = k == words
                yield RequestOutput(list(prompt["prompt_token_ids"]),
                                    [Completion(text, [1] * k, "length" if finished else None)], finished)
        finally:
            self.running.discard(request_id)

    async def abort(self, request_id):
        self.aborted.append(request_id)


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, SamplingParams
    module.AsyncLLMEngine, module.AsyncEngineArgs = FakeAsyncLLMEngine, AsyncEngineArgs
    FakeAsyncLLMEngine.instances.clear()
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.instances.clear()
    return FakeLLM.instances


def test_vllm_gets_token_ids_with_one_bos(bos_tokenizer, fake_vllm):
    from tuneforge.config.load import load
    from tuneforge.infer.engine import create_engine

    cfg = load(base={"model_name_or_path": "tuneforge/tiny", "template": "chatml", "do_train": False,
                     "infer_backend": "vllm"})[0]
    engine = create_engine(cfg.model, cfg.data, cfg.generate)
    assert engine.backend == "vllm"
    llm = fake_vllm[0]
    llm.tokenizer = engine.tokenizer
    bos_id = engine.tokenizer.bos_token_id
    question = [Message("user", "hi")]
    text = engine.prompt_text(question)
    assert text.startswith(BOS)  # the template renders the BOS itself

    [response] = engine.generate(question, n=1)
    assert response.text == "ok" and response.completion_tokens == 2
    assert engine.batch_generate([question, [Message("user", "again")]]) == ["ok", "ok"]
    assert all(isinstance(p, dict) and set(p) == {"prompt_token_ids"} for p in llm.prompts)
    first = llm.prompts[0]["prompt_token_ids"]
    assert first == engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    for prompt in llm.prompts:
        ids = prompt["prompt_token_ids"]
        assert ids[0] == bos_id and ids.count(bos_id) == 1, ids  # one BOS, not two
    assert response.prompt_tokens == len(first)


def test_vllm_loads_the_weights_in_infer_dtype(fake_vllm):
    from tuneforge.config.load import load
    from tuneforge.infer.engine import create_engine

    cfg = load(base={"model_name_or_path": "tuneforge/tiny", "template": "chatml", "do_train": False,
                     "infer_backend": "vllm", "infer_dtype": "bfloat16"})[0]
    create_engine(cfg.model, cfg.data, cfg.generate)
    assert fake_vllm[0].kwargs["dtype"] == "bfloat16"


def test_vllm_serves_concurrent_streams_and_aborts_the_ones_left(fake_vllm):
    from tuneforge.config.load import load
    from tuneforge.infer.engine import create_engine

    cfg = load(base={"model_name_or_path": "tuneforge/tiny", "template": "chatml", "do_train": False,
                     "infer_backend": "vllm", "vllm_maxlen": 2048})[0]
    engine = create_engine(cfg.model, cfg.data, cfg.generate, serving=True)
    assert not fake_vllm and engine.context_length == 2048  # no offline LLM is built to serve
    served = FakeAsyncLLMEngine.instances[0]
    assert served.args.kwargs["max_model_len"] == 2048

    async def answer(words: int):
        pieces = [p async for p in engine.stream([Message("user", "你好")], max_new_tokens=words)]
        return "".join(p.text for p in pieces), pieces[-1].response

    async def leave_after_one():
        stream = engine.stream([Message("user", "你好")], max_new_tokens=50)
        first = await anext(stream)
        await stream.aclose()
        return first.text

    async def together():
        return await asyncio.gather(answer(3), answer(5), leave_after_one())

    (three, r3), (five, r5), first = asyncio.run(together())
    assert three == r3.text == "ok ok ok" and five == "ok ok ok ok ok"  # trimmed as generate() trims
    assert (r3.completion_tokens, r3.finish_reason, r5.completion_tokens) == (3, "length", 5)
    assert first == "ok" and len(served.aborted) == 1  # the request whose caller left
    assert served.peak == 3  # in vLLM's engine together: no lock in front of it
