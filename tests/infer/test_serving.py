"""The transformers engine as the API server drives it (`serving=True`, `stream()`): with continuous
batching and in its one-at-a-time fallback the streamed pieces join to what `generate` answers, stop
strings (Chinese too) and max_tokens end answers the same way, and closing a stream cancels it."""

from __future__ import annotations

import asyncio

import pytest

from tuneforge.data.example import Message


def serving_engine(adapter, **keys):
    from tuneforge.config.load import load
    from tuneforge.infer.engine import create_engine

    base = {"model_name_or_path": "tuneforge/tiny", "adapter_name_or_path": str(adapter), "template": "qwen3_nothink",
            "do_train": False, "max_new_tokens": 48, **keys}
    cfg = load(base=base)[0]
    return create_engine(cfg.model, cfg.data, cfg.generate, serving=True)


async def served(engine, question: str, **overrides):
    pieces = [p async for p in engine.stream([Message("user", question)], **overrides)]
    assert all(p.response is None for p in pieces[:-1]) and pieces[-1].response is not None
    return "".join(p.text for p in pieces), pieces[-1].response


@pytest.mark.slow
@pytest.mark.parametrize("keys", [{}, {"repetition_penalty": 1.3}], ids=["batched", "one-at-a-time"])
def test_served_answers_equal_generate(identity_adapter, keys):
    engine = serving_engine(identity_adapter, **keys)
    try:
        assert (engine.batcher is None) == bool(keys)
        cases = [("你是谁", {}), ("Who are you?", {}), ("你是谁", {"stop": ["开发"]}),
                 ("你是谁", {"stop": "Tuneforge"}), ("Who are you?", {"max_new_tokens": 3})]

        async def run_all():
            return await asyncio.gather(*(served(engine, q, temperature=0, **o) for q, o in cases))

        results = asyncio.run(run_all())
        assert "Forge" in results[0][0]
        for (question, overrides), (text, response) in zip(cases, results):
            [whole] = engine.generate([Message("user", question)], temperature=0, **overrides)
            assert text == response.text == whole.text, (question, overrides)
            assert (response.completion_tokens, response.finish_reason) == (whole.completion_tokens,
                                                                            whole.finish_reason)
            assert response.prompt_tokens == whole.prompt_tokens
    finally:
        engine.close()


@pytest.mark.slow
def test_closing_a_stream_cancels_its_generation(identity_adapter):
    engine = serving_engine(identity_adapter, max_new_tokens=2000)
    try:
        async def leave_early():
            stream = engine.stream([Message("user", "1 2 3 4 5 6 7 8 9")], temperature=1.0)
            first = await anext(stream)
            assert len(engine.batcher.active) == 1
            await stream.aclose()
            return first

        before = engine.batcher.cancelled
        assert asyncio.run(leave_early()).text
        assert engine.batcher.cancelled == before + 1 and not engine.batcher.active
    finally:
        engine.close()


def test_decoder_never_sends_half_a_character(tiny_tokenizer):
    from tuneforge.infer.answer import AnswerDecoder

    text = "  我是 Forge，一个人工智能助手。再见  "
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    decoder = AnswerDecoder(tiny_tokenizer, [], [], 100, True, 0)
    pieces = [decoder.feed([t]) for t in ids]
    last = decoder.finish()
    assert not any("\ufffd" in p for p in pieces)
    assert "".join(pieces) + last.text == text.strip() == last.response.text
    assert last.response.completion_tokens == len(ids) and last.response.finish_reason == "stop"


def test_sampling_settings_per_request():
    from tuneforge.config.schema import GenerateConfig
    from tuneforge.infer.batching import batchable, cache_config, sampling

    g = GenerateConfig(temperature=0.8, top_p=0.7, top_k=0)
    greedy = {"temperature": 1.0, "top_k": 1, "top_p": 1.0}  # only the most likely token is left to draw
    assert sampling(g, 3000, {"temperature": 0.0}) == greedy
    assert sampling(GenerateConfig(do_sample=False), 3000, {}) == greedy
    assert sampling(g, 3000, {"temperature": 0.5, "top_p": 0.9}) == {"temperature": 0.5, "top_k": 3000, "top_p": 0.9}
    assert batchable(g) is None and "beam" in batchable(GenerateConfig(num_beams=2))
    cpu = cache_config("cpu", 4096)
    assert 4096 <= cpu["num_blocks"] * cpu["page_size"] <= 32768  # never sized from the machine's RAM
    assert cache_config("cpu", 1_000_000)["num_blocks"] * cpu["page_size"] == 32768
    assert cache_config("cuda", 4096) == {}
