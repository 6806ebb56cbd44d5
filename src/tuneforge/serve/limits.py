"""What the API server bounds, and how it says no (always JSON in OpenAI's error shape).

Limits are environment variables, like API_HOST / API_PORT / API_KEY (the server's settings, not the
model's, so they stay out of the training YAML):

  API_MAX_BODY_BYTES     request body, bytes (default 2 MiB)               -> 413; counted while reading,
                         so a larger body is never held in memory
  API_MAX_PROMPT_TOKENS  rendered prompt, tokens (default: the model's context minus one) -> 400
  API_MAX_TOKENS         max_tokens a request may ask for (default: the context minus its prompt;
                         a request without max_tokens gets max_new_tokens from the config, within that)
                         -> 400 beyond it, as OpenAI answers
  API_MAX_QUEUE          chat completions in flight (generating or waiting for the engine), default 128
                         -> 429 for the next one
  API_DRAIN_SECONDS      after SIGTERM/SIGINT, how long requests in flight may finish (default 20);
                         new requests get 503 meanwhile; a second signal stops at once
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from tuneforge.config.errors import ConfigError
from tuneforge.serve.protocol import APIError

CHAT_PATH = "/v1/chat/completions"
DRAIN_EXTRA_BYTES = 64 * 1024 * 1024  # read and dropped past the limit, so the client can read the 413


@dataclass(frozen=True)
class Limits:
    body_bytes: int = 2 * 1024 * 1024
    prompt_tokens: int | None = None
    max_tokens: int | None = None
    queue: int = 128
    drain_seconds: float = 20.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """The limits the environment sets (ConfigError naming the variable for a bad value)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in fields(cls):
            name = ENV[field.name]
            raw = env.get(name, "").strip()
            if not raw:
                continue
            seconds = field.name == "drain_seconds"
            try:
                value = float(raw) if seconds else int(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a {'number' if seconds else 'whole number'} "
                                  f"(e.g. {name}={EXAMPLE[field.name]})") from None
            if value < (0 if seconds else 1):
                raise ConfigError(f"{name}={raw} is out of range: {'0 or more' if seconds else 'at least 1'}")
            values[field.name] = value
        return cls(**values)


ENV = {"body_bytes": "API_MAX_BODY_BYTES", "prompt_tokens": "API_MAX_PROMPT_TOKENS", "max_tokens": "API_MAX_TOKENS",
       "queue": "API_MAX_QUEUE", "drain_seconds": "API_DRAIN_SECONDS"}
EXAMPLE = {"body_bytes": 2097152, "prompt_tokens": 8192, "max_tokens": 2048, "queue": 128, "drain_seconds": 20}


# ---------------------------------------------------------------------------- the body
def too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than {limit} bytes (API_MAX_BODY_BYTES on the server)",
                    code="request_too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, counted while it arrives: past `limit` the rest is read and dropped (up to a bound) so the
    client, still sending, gets the 413 rather than a reset connection. A client that asked to wait for
    `100 Continue` is refused before it sends anything."""
    declared = request.headers.get("content-length", "")
    oversized = declared.isdigit() and int(declared) > limit
    if oversized and "100-continue" in request.headers.get("expect", "").lower():
        raise too_large(limit)
    kept: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit and not oversized:
            kept.append(chunk)
        elif size > limit + DRAIN_EXTRA_BYTES:
            break
    if size > limit:
        raise too_large(limit)
    return b"".join(kept)


# ---------------------------------------------------------------------------- tokens
def check_prompt(prompt_tokens: int, limits: Limits, context: int | None) -> None:
    bounds = [b for b in (limits.prompt_tokens, context - 1 if context else None) if b is not None]
    if bounds and prompt_tokens > min(bounds):
        why = (f"the model's context is {context} tokens" if min(bounds) != limits.prompt_tokens
               else "API_MAX_PROMPT_TOKENS on the server")
        raise APIError(400, f"the prompt is {prompt_tokens} tokens; this server takes at most {min(bounds)} "
                            f"({why})", code="context_length_exceeded", param="messages")


def answer_tokens(requested: int | None, default: int | None, prompt_tokens: int | None, limits: Limits,
                  context: int | None) -> int | None:
    """max_new_tokens for a request: what it asked for (400 beyond what the server allows: the context
    left after the prompt, and API_MAX_TOKENS), else the config's default within those bounds."""
    room = context - prompt_tokens if context and prompt_tokens is not None else None
    if requested is not None:
        if room is not None and requested > room:
            raise APIError(400, f"this model's context is {context} tokens, and the request asks for "
                                f"{prompt_tokens + requested} ({prompt_tokens} in the messages, {requested} in "
                                f"max_tokens): ask for at most {room}", code="context_length_exceeded",
                           param="max_tokens")
        if limits.max_tokens is not None and requested > limits.max_tokens:
            raise APIError(400, f"max_tokens is {requested}; this server allows at most {limits.max_tokens} "
                                "(API_MAX_TOKENS)", code="invalid_value", param="max_tokens")
        return requested
    bounds = [b for b in (default, room, limits.max_tokens) if b is not None]
    return min(bounds) if bounds else None


# ---------------------------------------------------------------------------- queue and drain
class Traffic:
    """Chat completions in flight, whether the server is draining (shared by the Gate and the server), and
    `closing`, set when the drain time is up: the answers still running end with a 503."""

    def __init__(self) -> None:
        self.active = 0
        self.draining = False
        self.closing = asyncio.Event()


class Gate:
    """Pure ASGI middleware (streams stay unbuffered): counts chat completions until their last byte is
    sent, answers 429 past the queue limit, and 503 to every new request once the server drains, so a
    load balancer stops sending work (`/health` says {"status": "draining"})."""

    def __init__(self, app: Any, traffic: Traffic, queue: int):
        self.app, self.traffic, self.queue = app, traffic, queue

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.traffic.draining:
            response = (JSONResponse({"status": "draining"}, status_code=503) if scope["path"] == "/health" else
                        APIError(503, "the server is shutting down: send the request to another server",
                                 "server_error", "shutting_down").response(headers={"Connection": "close"}))
            await response(scope, receive, send)
            return
        if scope["path"] != CHAT_PATH:
            await self.app(scope, receive, send)
            return
        if self.traffic.active >= self.queue:
            error = APIError(429, f"the server has {self.traffic.active} requests in flight, its limit "
                                  "(API_MAX_QUEUE): retry shortly", "requests", "rate_limit_exceeded")
            await error.response(headers={"Retry-After": "1"})(scope, receive, send)
            return
        self.traffic.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.traffic.active -= 1
