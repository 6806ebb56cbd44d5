"""Chat: REPL history/clear/exit, streaming equals non-streaming under greedy decoding, stacked adapters."""

from __future__ import annotations

import pytest

from e2e.helpers import train


def engine_for(*adapters, **keys):
    from tuneforge.config.load import load
    from tuneforge.infer.engine import create_engine

    base = {"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink", "do_train": False,
            "do_sample": False, "max_new_tokens": 48, **keys}
    if adapters:
        base["adapter_name_or_path"] = ",".join(str(a) for a in adapters)
    cfg = load(base=base)[0]
    return create_engine(cfg.model, cfg.data, cfg.generate)


@pytest.mark.slow
def test_stream_equals_non_stream_and_repl(identity_adapter):
    from tuneforge.cli.chat import repl
    from tuneforge.data.example import Message

    engine = engine_for(identity_adapter)
    for question in ("你是谁", "Who are you?", "介绍一下你自己"):
        whole = engine.chat([Message("user", question)])
        assert "".join(engine.stream_chat([Message("user", question)])).strip() == whole
        assert "Forge" in whole

    inputs = iter(["你是谁", "", "Who are you?", "clear", "hello", "exit"])
    printed: list[str] = []
    history = repl(engine, None, read=lambda _: next(inputs), write=lambda *a, **k: printed.append("".join(a)))
    text = "".join(printed)
    assert "history cleared" in text and "tok/s" in text and "Forge" in text
    assert [m.role for m in history] == ["user", "assistant"]  # cleared, then one exchange, then exit
    assert history[0].content == "hello"


@pytest.mark.slow
def test_stacked_adapters_and_script_mode(identity_adapter, tmp_path):
    from tuneforge.cli.chat import answer_lines

    # create_new_adapter: the identity adapter is merged during training, a fresh one learns on top
    second = train(tmp_path, finetuning_type="lora", adapter_name_or_path=str(identity_adapter),
                   create_new_adapter=True, learning_rate=1e-4, max_steps=2)
    engine = engine_for(identity_adapter, second)  # the first is merged into the base, the second stays an adapter
    out: list[str] = []
    answer_lines(engine, ["你是谁\n", "\n", "Who are you?\n"], None, write=out.append)
    assert len(out) == 4 and out[0] == "User: 你是谁" and "Forge" in out[1] and "Forge" in out[3]


def test_vllm_backend_without_vllm_is_one_line(tmp_path):
    import importlib.util

    from conftest import assert_one_error_line, run_cli, write_yaml

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; this checks the message when it is not")
    cfg = write_yaml(tmp_path / "chat.yaml", model_name_or_path="tuneforge/tiny", template="qwen3_nothink",
                     infer_backend="vllm")
    result = run_cli("chat", str(cfg), stdin="hi\n")
    assert assert_one_error_line(result, alone=False).startswith("error: infer_backend: vllm needs vLLM")


@pytest.mark.parametrize(("infer_dtype", "expected"), [("auto", "float32"), ("bfloat16", "bfloat16")])
def test_chat_loads_the_weights_in_infer_dtype(infer_dtype, expected):
    # `auto` on a CPU is fp32 (half precision there is slower and gains nothing); a named dtype is kept
    engine = engine_for(infer_dtype=infer_dtype)
    assert str(next(engine.model.parameters()).dtype) == f"torch.{expected}"
