"""A server that holds: bounded bodies, prompts, max_tokens and queue (413/400/429 in OpenAI's shape), a
client that leaves cancels its generation (streamed or not), and SIGTERM drains in-flight requests for a
bounded time, new ones getting 503. Server logic with stand-in engines; cancellation with the real
engine on the tiny base model (it never stops on its own); the drain on the `tuneforge api` command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from api_helpers import assert_error, free_port, http, serve
from conftest import assert_one_error_line, run_cli, write_yaml
from tuneforge.infer.base import Piece, Response

USER = [{"role": "user", "content": "你好"}]


class Words:
    """A stand-in engine: the prompt is its words, the answer "好 的" unless `endless` (then it never ends);
    `closed` counts streams closed before they finished (what a cancelled generation looks like)."""

    def __init__(self, context_length: int | None = None, max_new_tokens: int = 512, endless: bool = False):
        self.context_length, self.endless, self.calls, self.closed = context_length, endless, [], 0
        self.generation_cfg = type("G", (), {"max_new_tokens": max_new_tokens})()
        self.gate = threading.Event()

    def prompt_text(self, messages, system=None, tools=None):
        return " ".join(m.content for m in messages)

    async def stream(self, messages, system=None, tools=None, **overrides):
        self.calls.append(overrides)
        finished = False
        try:
            yield Piece("好")
            while self.endless or not self.gate.is_set():
                await asyncio.sleep(0.01)
            finished = True
            yield Piece(" 的", Response("好 的", 1, 2, "stop"))
        finally:
            self.closed += not finished


def app_for(engine, **limits):
    from tuneforge.serve.api import create_app
    from tuneforge.serve.limits import Limits

    return create_app(engine, "m", limits=Limits(**limits))


def wait_for(predicate, seconds: float = 30, what: str = "the condition") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.02)


# ---------------------------------------------------------------------------- limits
def test_a_body_over_the_limit_is_413_and_never_parsed():
    from fastapi.testclient import TestClient

    engine = Words()
    engine.gate.set()
    api = TestClient(app_for(engine, body_bytes=2000))
    fits = json.dumps({"messages": USER}).encode()
    assert api.post("/v1/chat/completions", content=fits).status_code == 200
    big = json.dumps({"messages": [{"role": "user", "content": "长" * 3000}]}, ensure_ascii=False).encode()
    error = assert_error(api.post("/v1/chat/completions", content=big), 413)
    assert error["code"] == "request_too_large" and "2000 bytes" in error["message"]
    # without a Content-Length (chunked), counted while it arrives
    assert_error(api.post("/v1/chat/completions", content=iter([big[:1500], big[1500:]])), 413)
    assert len(engine.calls) == 1


def test_prompt_and_max_tokens_beyond_the_limits_are_400():
    from fastapi.testclient import TestClient

    engine = Words(context_length=16, max_new_tokens=100)
    engine.gate.set()
    api = TestClient(app_for(engine, max_tokens=8))
    long_prompt = [{"role": "user", "content": " ".join(["字"] * 16)}]
    error = assert_error(api.post("/v1/chat/completions", json={"messages": long_prompt}), 400)
    assert error["code"] == "context_length_exceeded" and "16 tokens" in error["message"]
    four = [{"role": "user", "content": "一 二 三 四"}]
    error = assert_error(api.post("/v1/chat/completions", json={"messages": four, "max_tokens": 13}), 400)
    assert error["param"] == "max_tokens" and "at most 12" in error["message"]  # 16 - 4 prompt tokens
    error = assert_error(api.post("/v1/chat/completions", json={"messages": four, "max_tokens": 9}), 400)
    assert "API_MAX_TOKENS" in error["message"]
    assert api.post("/v1/chat/completions", json={"messages": four, "max_completion_tokens": 5}).status_code == 200
    assert api.post("/v1/chat/completions", json={"messages": four}).status_code == 200
    assert [c["max_new_tokens"] for c in engine.calls] == [5, 8]  # asked for; the config's 100 within the bounds
    strict = TestClient(app_for(engine, prompt_tokens=3))
    error = assert_error(strict.post("/v1/chat/completions", json={"messages": four}), 400)
    assert "API_MAX_PROMPT_TOKENS" in error["message"]


def test_limits_come_from_the_environment(tmp_path, monkeypatch):
    from tuneforge.config.errors import ConfigError
    from tuneforge.serve.limits import Limits

    env = {"API_MAX_BODY_BYTES": "1000", "API_MAX_PROMPT_TOKENS": "100", "API_MAX_TOKENS": "50",
           "API_MAX_QUEUE": "4", "API_DRAIN_SECONDS": "2.5"}
    assert Limits.from_env(env) == Limits(1000, 100, 50, 4, 2.5)
    assert Limits.from_env({}) == Limits()
    with pytest.raises(ConfigError, match="API_DRAIN_SECONDS=-1 is out of range"):
        Limits.from_env({"API_DRAIN_SECONDS": "-1"})
    config = write_yaml(tmp_path / "api.yaml", model_name_or_path="tuneforge/tiny", template="qwen3_nothink")
    monkeypatch.setenv("API_PORT", str(free_port()))
    monkeypatch.setenv("API_MAX_QUEUE", "many")
    assert_one_error_line(run_cli("api", str(config), timeout=60), "API_MAX_QUEUE='many' is not a whole number")


def test_a_full_queue_is_429_and_a_draining_server_503():
    engine = Words()
    app = app_for(engine, queue=2)
    with serve(app) as url, http() as h:
        held = [threading.Thread(target=h.post, args=(url + "/v1/chat/completions",),
                                 kwargs={"json": {"messages": USER}}) for _ in range(2)]
        for thread in held:
            thread.start()
        wait_for(lambda: len(engine.calls) == 2, what="two requests generating")
        full = h.post(url + "/v1/chat/completions", json={"messages": USER})
        error = assert_error(full, 429)
        assert error["code"] == "rate_limit_exceeded" and full.headers["retry-after"] == "1"
        assert h.get(url + "/v1/models").status_code == 200  # only generation is queued
        app.state.traffic.draining = True
        assert_error(h.post(url + "/v1/chat/completions", json={"messages": USER}), 503)
        health = h.get(url + "/health")
        assert health.status_code == 503 and health.json() == {"status": "draining"}
        engine.gate.set()
        for thread in held:
            thread.join(30)
        assert len(engine.calls) == 2 and engine.closed == 0
        wait_for(lambda: app.state.traffic.active == 0, 10, "the queue emptying")  # after the last byte


# ---------------------------------------------------------------------------- clients that leave
def raw_request(port: int, body: dict) -> socket.socket:
    """A POST sent on a plain socket, left open (closing it is the client leaving)."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
    return sock


@pytest.mark.parametrize("stream", [False, True])
def test_a_never_ending_generation_is_cancelled_when_its_client_leaves(stream):
    engine = Words(endless=True)
    with serve(app_for(engine)) as url:
        port = int(url.rsplit(":", 1)[1])
        clients = [raw_request(port, {"messages": USER, "stream": stream}) for _ in range(3)]
        wait_for(lambda: len(engine.calls) == 3, what="three generations")
        for sock in clients:
            sock.close()
        wait_for(lambda: engine.closed == 3, 10, "the cancellation of three generations")
        with http() as h:
            assert h.get(url + "/health").json() == {"status": "ok"}


@pytest.fixture(scope="module")
def rambler():
    """The tiny base model served: it never emits its stop token, so every answer runs to max_tokens."""
    from tuneforge.config.load import load
    from tuneforge.infer.engine import create_engine

    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink", "do_train": False})
    engine = create_engine(cfg.model, cfg.data, cfg.generate, serving=True)
    yield engine
    engine.close()


@pytest.mark.slow
def test_twenty_clients_that_leave_cancel_their_generations(rambler):
    batcher = rambler.batcher
    assert batcher is not None, "continuous batching is off for the default settings"
    before = batcher.cancelled
    with serve(app_for(rambler)) as url:
        port = int(url.rsplit(":", 1)[1])
        body = {"messages": USER, "temperature": 0, "max_tokens": 3000}
        clients = [raw_request(port, {**body, "stream": i % 2 == 0}) for i in range(20)]
        wait_for(lambda: len(batcher.active) == 20, 60, "twenty generations in the engine")
        for sock in clients:
            sock.close()
        wait_for(lambda: batcher.held() == 0 and not batcher.active, 30, "the engine dropping the generations")
        assert batcher.cancelled - before == 20  # none ran to its 3000 tokens
        with http() as h:
            reply = h.post(url + "/v1/chat/completions", json={**body, "max_tokens": 5})
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 5


# ---------------------------------------------------------------------------- the command under load
def open_stream(port: int, max_tokens: int) -> tuple[socket.socket, bytes]:
    """A streamed request on a plain socket, read until its first text arrived (retried while the server
    answers 429, as a freed slot takes a moment); returns the socket and what was read."""
    body = {"messages": USER, "stream": True, "temperature": 0, "max_tokens": max_tokens}
    deadline = time.monotonic() + 30
    while True:
        sock, seen = raw_request(port, body), b""
        sock.settimeout(60)
        while b'"content": "' not in seen.split(b'"role"', 1)[-1] and b" 429 " not in seen[:16]:
            chunk = sock.recv(65536)
            assert chunk, f"the stream ended before any text: {seen[-300:]!r}"
            seen += chunk
        if b" 429 " not in seen[:16]:
            return sock, seen
        sock.close()
        assert time.monotonic() < deadline, "the queue stayed full"
        time.sleep(0.1)


def read_rest(sock: socket.socket, seen: bytes) -> bytes:
    with sock:
        while chunk := sock.recv(65536):
            seen += chunk
    return seen


def peak_rss_mib(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def start_command(tmp_path: Path, **env_vars: str) -> tuple[subprocess.Popen, int, Path]:
    config = write_yaml(tmp_path / "api.yaml", model_name_or_path="tuneforge/tiny", template="qwen3_nothink")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "API_HOST")}
    env.update(API_PORT=str(port), API_LOG_LEVEL="warning", **env_vars)
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tuneforge", "api", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    with http() as h:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not start in 120 s"
            try:
                if h.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return proc, port, log
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak RSS from /proc")
def test_command_bounds_body_and_queue_and_drains_on_sigterm(tmp_path):
    """`tuneforge api` on the tiny base model (answers never end before max_tokens): a 48 MB body is 413
    without the server's peak memory growing, the 7th request beyond API_MAX_QUEUE=6 is 429, and under
    SIGTERM the short streams in flight finish, a new request gets 503, the 4000-token ones end with a
    503 error event when API_DRAIN_SECONDS=3 is up, and the process exits with 0."""
    proc, port, log = start_command(tmp_path, API_MAX_QUEUE="6", API_DRAIN_SECONDS="3")
    url = f"http://127.0.0.1:{port}"
    try:
        with http() as h:
            peak = peak_rss_mib(proc.pid)
            big = b'{"messages": [{"role": "user", "content": "' + b"x" * (48 * 1024 * 1024) + b'"}]}'
            assert_error(h.post(url + "/v1/chat/completions", content=big), 413)
            assert peak_rss_mib(proc.pid) - peak < 24, "the 48 MB body was held in memory"
            long = [open_stream(port, 4000) for _ in range(6)]
            assert_error(h.post(url + "/v1/chat/completions", json={"messages": USER}), 429)
            for sock, _ in long[4:]:
                sock.close()  # two clients leave: their places are free again
            short = [open_stream(port, 40) for _ in range(2)]
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert_error(h.post(url + "/v1/chat/completions", json={"messages": USER}), 503)
        finished = [read_rest(*s) for s in short]
        assert all(b"data: [DONE]" in f and b"shutting_down" not in f for f in finished), finished
        ended = [read_rest(*s) for s in long[:4]]
        assert all(b'"code": "shutting_down"' in e and b"data: [DONE]" in e for e in ended), ended
        code = proc.wait(timeout=30)
        took = time.monotonic() - signalled
        assert code == 0, log.read_text()[-3000:]
        assert 3 <= took < 3 + 10, took
        text = log.read_text()
        assert "SIGTERM: finishing the" in text and "drain time is up" in text and "Traceback" not in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
