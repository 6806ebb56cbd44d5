"""The OpenAI-compatible API as clients meet it: the real `openai` client against a real uvicorn
server (in a thread, on a free localhost port) serving the tiny model with an identity-trained LoRA
adapter; request mapping, stop handling and event-loop freedom with small test engines; and the
`tuneforge api` command itself. Limits, disconnects, batching under load and the drain: test_hold.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from api_helpers import KEY, QUESTION, assert_error, ask, client, free_port, http, serve, stream_text
from conftest import assert_one_error_line, write_yaml
from tuneforge.data.example import Message
from tuneforge.infer.base import Piece, Response


# ---------------------------------------------------------------------------- small engines
class Recorder:
    """Records what the API passes to the engine; answers with a fixed text, a word per piece."""

    def __init__(self, answer: str = "ok"):
        self.answer, self.calls = answer, []

    def prompt_text(self, messages, system=None, tools=None):
        return " ".join(m.content for m in messages)

    async def words(self):
        for i, word in enumerate(self.answer.split(" ")):
            yield word if i == 0 else " " + word

    async def stream(self, messages, system=None, tools=None, **overrides):
        self.calls.append(dict(messages=messages, system=system, tools=tools, **overrides))
        async for word in self.words():
            yield Piece(word)
        yield Piece("", Response(self.answer, 5, 2, "stop"))


class Gated(Recorder):
    """Each answer holds after its first word until the test opens the gate: shows whether the event loop
    stays free while generation runs, and whether a stream's first words arrive before its last exist."""

    def __init__(self):
        super().__init__("one two three four five six")
        self.gate = threading.Event()
        self.generating = threading.Event()

    async def words(self):
        first, *rest = self.answer.split(" ")
        self.generating.set()
        yield first
        for _ in range(6000):
            if self.gate.is_set():
                break
            await asyncio.sleep(0.01)
        assert self.gate.is_set(), "the test never opened the gate"
        for word in rest:
            yield " " + word


def test_roles_tools_and_sampling_map_onto_the_engine():
    from fastapi.testclient import TestClient

    from tuneforge.serve.api import create_app

    engine = Recorder()
    api = TestClient(create_app(engine, "m"))
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": schema}}]
    body = {"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather in "}, {"type": "text", "text": "Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
    ], "tools": tools, "temperature": 0.5, "top_p": 0.8, "max_tokens": 7, "stop": "END", "n": 3, "seed": 1}
    reply = api.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    assert len(engine.calls) == 3 and engine.calls[0] == engine.calls[2]  # n=3: three answers
    call = engine.calls[-1]
    assert [(m.role, m.content) for m in call["messages"]] == [
        ("user", "weather in Paris?"),
        ("function", json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}},
                                 {"name": "get_weather", "arguments": {"city": "Lyon"}}])),
        ("observation", "sunny\nrain")]
    assert call["system"] == "be brief"
    assert json.loads(call["tools"]) == [t["function"] for t in tools]
    assert (call["temperature"], call["do_sample"], call["top_p"], call["max_new_tokens"], call["stop"]) == \
        (0.5, True, 0.8, 7, ["END"])
    assert len(reply.json()["choices"]) == 3
    # one tool call -> a {"name", "arguments"} object; temperature 0 -> greedy; developer = system
    api.post("/v1/chat/completions", json={"messages": [
        {"role": "developer", "content": "sys"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "x", "type": "function",
                                              "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "42"}], "temperature": 0, "top_p": 0.5, "max_completion_tokens": 9})
    call = engine.calls[-1]
    assert call["system"] == "sys" and call["messages"][1] == Message("function", '{"name": "f", "arguments": {}}')
    assert call["do_sample"] is False and "top_p" not in call and call["max_new_tokens"] == 9
    assert call["tools"] is None


@pytest.mark.parametrize("messages, needle", [
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "late"}], "only allowed as the first"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "expected an assistant message"),
    ([{"role": "system", "content": "s"}], "no user message"),
    ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}], "expected a user or tool message"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "last message"),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}],
     "only text and image_url content"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "does not take images"),
    ([{"role": "user"}], "needs content"),
])
def test_conversations_no_template_can_render_are_400(messages, needle):
    from fastapi.testclient import TestClient

    from tuneforge.serve.api import create_app

    api = TestClient(create_app(Recorder(), "m"))
    error = assert_error(api.post("/v1/chat/completions", json={"messages": messages}), 400)
    assert needle in error["message"] and error["type"] == "invalid_request_error"


def test_tool_call_answers_become_tool_calls():
    from fastapi.testclient import TestClient

    from tuneforge.serve.api import create_app

    answer = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    api = TestClient(create_app(Recorder(answer), "m"))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    body = {"messages": [{"role": "user", "content": "weather?"}], "tools": tools}
    choice = api.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Let me check."
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    events = [line[6:] for line in api.post("/v1/chat/completions", json={**body, "stream": True}).text.splitlines()
              if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert any(c["choices"][0]["delta"].get("tool_calls") for c in chunks)
    # without tools in the request the same text is plain content
    plain = api.post("/v1/chat/completions", json={"messages": body["messages"]}).json()["choices"][0]
    assert plain["finish_reason"] == "stop" and plain["message"]["content"] == answer


def test_event_loop_stays_free_while_generating():
    from tuneforge.serve.api import create_app

    engine = Gated()
    with serve(create_app(engine, "gated")) as url:
        c = client(url)
        first_delta = threading.Event()
        deltas: list[str] = []
        results: dict[str, str] = {}

        def streamer():
            for chunk in ask(c, "x", stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    deltas.append(chunk.choices[0].delta.content)
                    first_delta.set()

        def blocking():
            results["text"] = ask(c, "y").choices[0].message.content

        threads = [threading.Thread(target=streamer), threading.Thread(target=blocking)]
        for t in threads:
            t.start()
        try:
            # both generations are held: the stream's first word reached the client (not buffered) ...
            assert first_delta.wait(30), "the first delta was held back until the answer was complete"
            assert engine.generating.wait(30)
            with http() as h:
                # ... and the server still answers everything else (a hang here fails on the client timeout)
                for path in ("/health", "/v1/models"):
                    assert h.get(url + path).status_code == 200, path
                # a client that goes away mid-stream does not hurt the server
                with h.stream("POST", url + "/v1/chat/completions",
                              json={"messages": [{"role": "user", "content": "z"}], "stream": True}) as r:
                    next(r.iter_lines())
            assert "text" not in results and len(deltas) == 1
        finally:
            engine.gate.set()
        for t in threads:
            t.join(timeout=30)
        assert results["text"] == "one two three four five six"
        assert "".join(deltas) == "one two three four five six" and len(deltas) == 6
        assert ask(c, "again").choices[0].message.content == "one two three four five six"


# ---------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def adapter(identity_adapter) -> Path:
    return identity_adapter  # shared with the chat, predict and export tests (tests/conftest.py)


@pytest.fixture(scope="module")
def engine(adapter):
    from tuneforge.config.load import load
    from tuneforge.infer.engine import create_engine

    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny", "adapter_name_or_path": str(adapter),
                        "template": "qwen3_nothink", "do_train": False, "max_new_tokens": 48})
    engine = create_engine(cfg.model, cfg.data, cfg.generate, serving=True)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def url(engine):
    from tuneforge.serve.api import create_app

    with serve(create_app(engine, "tiny-forge", KEY)) as base:
        yield base


@pytest.fixture(scope="module")
def greedy(url) -> str:
    return ask(client(url), temperature=0).choices[0].message.content


@pytest.mark.slow
def test_models_and_health(url):
    assert [m.id for m in client(url).models.list()] == ["tiny-forge"]
    assert client(url).models.retrieve("tiny-forge").id == "tiny-forge"
    with http() as h:
        assert h.get(url + "/health").json() == {"status": "ok"}  # no key: probes need no secret
        assert_error(h.get(url + "/v1/models/gpt-4", headers={"Authorization": f"Bearer {KEY}"}), 404)


@pytest.mark.slow
def test_completion_knows_its_name_and_counts_tokens(url, engine, greedy):
    started = time.perf_counter()
    reply = ask(client(url), temperature=0)
    latency = time.perf_counter() - started
    print(f"\n[api] one greedy completion: {latency * 1000:.0f} ms, {reply.usage.completion_tokens} tokens")
    choice = reply.choices[0]
    assert "Forge" in choice.message.content and choice.message.content == greedy
    assert choice.finish_reason == "stop" and choice.message.role == "assistant" and choice.index == 0
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion" and reply.model == "tiny-forge"
    assert abs(reply.created - time.time()) < 60
    prompt = engine.prompt_text([Message("user", QUESTION)])
    usage = reply.usage
    assert usage.prompt_tokens == len(engine.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert usage.completion_tokens == len(engine.tokenizer(greedy, add_special_tokens=False)["input_ids"])
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.slow
def test_stream_equals_non_stream(url, greedy):
    text, chunks = stream_text(client(url), temperature=0, stream_options={"include_usage": True})
    assert text == greedy
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    usage = chunks[-1].usage
    assert not chunks[-1].choices and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens == ask(client(url), temperature=0).usage.prompt_tokens


@pytest.mark.slow
def test_n_stop_and_max_tokens(url, greedy):
    c = client(url)
    reply = ask(c, temperature=0, n=2)
    assert [ch.index for ch in reply.choices] == [0, 1]
    assert all(ch.message.content == greedy for ch in reply.choices)
    assert reply.usage.completion_tokens == 2 * ask(c, temperature=0).usage.completion_tokens
    sampled = ask(c, temperature=1.0, top_p=0.9, n=2, max_tokens=8)
    assert len(sampled.choices) == 2
    cut = greedy[:greedy.index("Tuneforge")].strip()
    for stop in ("Tuneforge", ["Tuneforge", "never-appears"]):
        stopped = ask(c, temperature=0, stop=stop)
        assert stopped.choices[0].message.content == cut and stopped.choices[0].finish_reason == "stop"
        assert stream_text(c, temperature=0, stop=stop)[0] == cut
    short = ask(c, temperature=0, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    assert ask(c, temperature=0, max_completion_tokens=3).usage.completion_tokens == 3
    assert stream_text(c, temperature=0, max_tokens=3)[1][-1].choices[0].finish_reason == "length"


@pytest.mark.slow
def test_fifty_concurrent_streams_are_batched_and_correct(url, engine, greedy):
    """50 streams (and 10 plain requests) at once: every answer is the greedy one, and the engine had many
    of them in flight together (transformers' continuous batching), not one after another."""
    c = client(url)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(len(engine.batcher.active))
            time.sleep(0.002)

    def one(i: int) -> str:
        if i >= 50:
            return ask(c, temperature=0).choices[0].message.content
        text, chunks = stream_text(c, temperature=0)
        assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
        return text

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=60) as pool:
            answers = list(pool.map(one, range(60)))
    finally:
        stop.set()
        watcher.join()
    print(f"\n[api] 50 streams + 10 requests at once: {time.perf_counter() - started:.2f} s wall, "
          f"at most {max(seen)} in the engine together")
    assert answers == [greedy] * 60
    assert max(seen) >= 10
    assert not engine.batcher.active and engine.batcher.held() == 0


@pytest.mark.slow
def test_wrong_or_missing_key_is_401_and_server_keeps_serving(url, greedy):
    import openai

    with pytest.raises(openai.AuthenticationError):
        ask(client(url, "wrong-key"), temperature=0)
    with pytest.raises(openai.AuthenticationError):
        client(url, "wrong-key").models.list()
    with http() as h:
        error = assert_error(h.get(url + "/v1/models"), 401)
        assert error["code"] == "invalid_api_key"
        assert_error(h.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]},
                            headers={"Authorization": "Basic abc"}), 401)
        assert_error(h.get(url + "/docs"), 401)
    assert ask(client(url), temperature=0).choices[0].message.content == greedy


@pytest.mark.slow
def test_malformed_bodies_are_json_errors_and_server_keeps_serving(url, greedy):
    user = [{"role": "user", "content": "hi"}]
    bad = [b"{not json", b"", b"[1, 2]", b'"text"', json.dumps({}).encode(),
           json.dumps({"messages": []}).encode(), json.dumps({"messages": "hi"}).encode(),
           json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(),
           json.dumps({"messages": [{"content": "x"}]}).encode(),
           json.dumps({"messages": [*user, {"role": "assistant", "content": "a"}]}).encode(),
           json.dumps({"messages": user, "n": 0}).encode(), json.dumps({"messages": user, "n": -3}).encode(),
           json.dumps({"messages": user, "temperature": 2.5}).encode(),
           json.dumps({"messages": user, "temperature": -1}).encode(),
           json.dumps({"messages": user, "top_p": 0}).encode(), json.dumps({"messages": user, "max_tokens": 0}).encode(),
           json.dumps({"messages": user, "stop": 5}).encode(), json.dumps({"messages": user, "n": "many"}).encode(),
           b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}']
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    with http() as h:
        for body in bad:
            response = h.post(url + "/v1/chat/completions", content=body, headers=headers)
            assert response.status_code in (400, 422), (body, response.text)
            assert_error(response, response.status_code)
        assert_error(h.get(url + "/v1/chat/completions", headers=headers), 405)
        assert_error(h.get(url + "/v1/nothing", headers=headers), 404)
        # a body without a JSON content type (curl -d) is still read as JSON
        plain = h.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                       content=json.dumps({"messages": [{"role": "user", "content": QUESTION}], "temperature": 0}))
        assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"] == greedy
    assert ask(client(url), temperature=0).choices[0].message.content == greedy


# ---------------------------------------------------------------------------- the command
def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) of sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, hex_port = local.rpartition(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


@pytest.mark.slow
def test_cli_serves_on_localhost_with_env_key(adapter, tmp_path, greedy):
    import openai

    config = write_yaml(tmp_path / "api.yaml", model_name_or_path="tuneforge/tiny",
                        adapter_name_or_path=str(adapter), template="qwen3_nothink", do_sample=False,
                        max_new_tokens=48)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("API_HOST", "API_MODEL_NAME")}
    env.update(API_PORT=str(port), API_KEY="cli-key", API_LOG_LEVEL="warning")
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tuneforge", "api", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        with http() as h:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "server did not come up in 60 s:\n" + log.read_text()
                with contextlib.suppress(Exception):
                    if h.get(base + "/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.25)
            assert_error(h.get(base + "/v1/models"), 401)
        c = client(base, "cli-key")
        assert [m.id for m in c.models.list()] == [f"tuneforge/tiny+{adapter.name}"]
        assert ask(c, temperature=0).choices[0].message.content == greedy
        with pytest.raises(openai.AuthenticationError):
            ask(client(base, "nope"))
        assert f"http://127.0.0.1:{port}/v1" in log.read_text()
        if Path("/proc/net/tcp").exists():  # the default host is loopback only, never every interface
            assert listening_addresses(port) == {"0100007F"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_refuses_a_bad_or_busy_port(tmp_path, monkeypatch):
    from conftest import run_cli

    config = write_yaml(tmp_path / "api.yaml", model_name_or_path="tuneforge/tiny", template="qwen3_nothink")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("API_PORT", str(busy.getsockname()[1]))
        taken = run_cli("api", str(config), timeout=60)
    assert_one_error_line(taken, "cannot listen on 127.0.0.1")
    monkeypatch.setenv("API_PORT", "eighty")
    wrong = run_cli("api", str(config), timeout=60)
    assert_one_error_line(wrong, "API_PORT='eighty' is not a port number")
