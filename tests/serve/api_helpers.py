"""Helpers the API tests share: a real uvicorn server in a thread on a free localhost port, the openai
and httpx clients, and the OpenAI error shape."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

KEY = "tf-test-key"
QUESTION = "你是谁"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(app):
    """Run `app` on a real uvicorn server in a background thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def client(url: str, key: str = KEY):
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def http():
    import httpx2

    return httpx2.Client(timeout=60)


def ask(c, question: str = QUESTION, **kwargs):
    return c.chat.completions.create(model="anything", messages=[{"role": "user", "content": question}], **kwargs)


def stream_text(c, question: str = QUESTION, **kwargs) -> tuple[str, list]:
    chunks = list(ask(c, question, stream=True, **kwargs))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    return text, chunks


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"} and error["message"], error
    assert "Traceback" not in response.text
    return error
