"""An OpenAI-compatible HTTP API over any tuneforge inference engine.

Routes: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions` (JSON or SSE stream),
`GET /health`. With an API key every route except `/health` needs `Authorization: Bearer <key>`.

Requests are mapped onto the canonical conversation the templates render:
  system / developer (first message only) -> the system prompt
  user                                    -> user
  assistant                               -> assistant
  assistant with tool_calls               -> function (JSON: {"name", "arguments"}, a list for several)
  tool (or legacy function)               -> observation (consecutive ones are joined by newlines)
  tools [{"type": "function", ...}]       -> the JSON list of the functions (the template writes it)
After the optional system message the roles must alternate user/tool, assistant, ... and the last
one is a user or tool message, as every template expects.

Generation never runs on the event loop: blocking calls go to the thread pool, and a stream is
consumed one `next()` per worker-thread hop, so a slow generation never stalls other requests.
The engine serialises model access itself (`engine.lock`); an engine without one is serialised here.
Every error, bad input included, is JSON in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge.config.errors import TuneforgeError
from tuneforge.serve.protocol import (
    APIError,
    ChatCompletionRequest,
    generation_overrides,
    parse_tool_calls,
    stop_list,
    to_conversation,
    validation_error,
)

logger = logging.getLogger("tuneforge.serve")

OPEN_PATHS = {"/health"}  # reachable without the API key (liveness probes; reveals nothing)


async def parse_request(request: Request) -> ChatCompletionRequest:
    """The body as JSON whatever the Content-Type says (`curl -d` sends form-encoded), then validated."""
    body = await request.body()
    if not body.strip():
        raise APIError(400, "the request body is empty: send a JSON object with 'messages'", code="invalid_json")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, f"the request body must be a JSON object, not {type(data).__name__}",
                       code="invalid_json")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None


class KeyAuth:
    """Pure ASGI middleware (keeps streaming unbuffered): a bearer key on every path but OPEN_PATHS."""

    def __init__(self, app: Any, api_key: str):
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        auth = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() == b"bearer" and secrets.compare_digest(token.strip(), self.key):
            await self.app(scope, receive, send)
            return
        message = ("Incorrect API key provided." if auth else
                   "You didn't provide an API key: send it as 'Authorization: Bearer <key>'.")
        response = APIError(401, message, "invalid_request_error", "invalid_api_key").response(
            headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


class StopCutter:
    """Turns streamed pieces into deltas that equal the non-streamed answer: cut at the first stop
    sequence, hold back what could be the start of one, and trim whitespace at both ends (the
    non-streamed text is `.strip()`ped)."""

    def __init__(self, stops: list[str]):
        self.stops, self.buf, self.started, self.stopped = stops, "", False, False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.buf += piece
        if not self.started:
            self.buf = self.buf.lstrip()
            if not self.buf:
                return ""
            self.started = True
        hits = [self.buf.index(s) for s in self.stops if s in self.buf]
        if hits:
            out, self.buf, self.stopped = self.buf[:min(hits)].rstrip(), "", True
            return out
        keep = len(self.buf) - len(self.buf.rstrip())
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buf)), keep, -1):
                if self.buf.endswith(s[:k]):
                    keep = k
                    break
        cut = len(self.buf[:len(self.buf) - keep].rstrip())  # whitespace before a held stop start waits too
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return out

    def finish(self) -> str:
        out, self.buf = self.buf.rstrip(), ""
        return out


def count_tokens(engine: Any, text: str) -> int:
    """Token count without changing the tokenizer's padding state (fast tokenizers raise 'Already
    borrowed' when one thread re-configures padding while another encodes)."""
    tok = getattr(engine, "tokenizer", None)
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        return sum(backend.encode(text, add_special_tokens=False).attention_mask)
    if tok is not None:
        return len(tok.encode(text, add_special_tokens=False))
    return len(text.split())


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


# ---------------------------------------------------------------------------- the app
def create_app(engine: Any, model_name: str, api_key: str | None = None) -> FastAPI:
    """The FastAPI app serving `engine` (anything with generate/stream_chat, see infer.engine)."""
    from tuneforge import __version__

    app = FastAPI(title="tuneforge OpenAI-compatible API", version=__version__)
    if api_key:
        app.add_middleware(KeyAuth, api_key=api_key)
    started = int(time.time())
    # The HF engine serialises model access with its own lock; serialise any engine that does not.
    engine_lock = None if hasattr(engine, "lock") else threading.Lock()

    def locked(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if engine_lock is None:
            return fn(*args, **kwargs)
        with engine_lock:
            return fn(*args, **kwargs)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(list(exc.errors())).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return APIError(exc.status_code, str(exc.detail), kind).response(headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return APIError(500, f"internal error: {type(exc).__name__}", "server_error").response()

    def model_card() -> dict[str, Any]:
        return {"id": model_name, "object": "model", "created": started, "owned_by": "tuneforge"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id != model_name:
            raise APIError(404, f"The model '{model_id}' does not exist (this server has '{model_name}')",
                           "invalid_request_error", "model_not_found", "model")
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        req = await parse_request(request)
        messages, system, tools = to_conversation(req)
        stops = stop_list(req.stop)
        overrides = generation_overrides(req, stops)
        n = req.n or 1
        prompt_tokens = None
        if hasattr(engine, "prompt_text"):
            try:
                prompt = await run_in_threadpool(engine.prompt_text, messages, system, tools)
            except (TuneforgeError, ValueError, LookupError, TypeError) as exc:
                raise APIError(400, f"the chat template cannot render these messages: {exc}") from None
            prompt_tokens = await run_in_threadpool(count_tokens, engine, prompt)
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": cid, "created": created, "model": model_name, "system_fingerprint": None}

        async def generate() -> list[Any]:
            try:
                return await run_in_threadpool(locked, engine.generate, messages, system, tools, n, **overrides)
            except Exception as exc:
                logger.exception("generation failed")
                raise APIError(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error") from None

        def choice(index: int, text: str, reason: str) -> dict[str, Any]:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if tools:
                content, calls = parse_tool_calls(text)
                if calls:
                    message, reason = {"role": "assistant", "content": content, "tool_calls": calls}, "tool_calls"
            return {"index": index, "message": message, "logprobs": None, "finish_reason": reason}

        if not req.stream:
            responses = await generate()
            used = prompt_tokens if prompt_tokens is not None else responses[0].prompt_tokens
            completion = sum(r.completion_tokens for r in responses)
            return {**head, "object": "chat.completion",
                    "choices": [choice(i, r.text, r.finish_reason) for i, r in enumerate(responses)],
                    "usage": {"prompt_tokens": used, "completion_tokens": completion,
                              "total_tokens": used + completion}}

        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        max_new = overrides.get("max_new_tokens") or getattr(getattr(getattr(engine, "cfg", None), "generate", None),
                                                              "max_new_tokens", None)

        def chunk(index: int, delta: dict[str, Any], reason: str | None = None) -> str:
            return _sse({**head, "object": "chat.completion.chunk",
                         "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}]})

        async def pieces() -> AsyncIterator[str]:
            """The engine's stream, one next() per worker-thread hop, closed however we leave."""
            it: Iterator[str] = engine.stream_chat(messages, system, tools, **overrides)
            done = object()
            try:
                while True:
                    piece = await run_in_threadpool(locked, next, it, done)
                    if piece is done:
                        return
                    yield piece
            finally:
                it.close()

        async def events() -> AsyncIterator[str]:
            completion_tokens = 0
            try:
                if tools:  # a tool call is only known once the answer is complete: generate, then send it
                    responses = await generate()
                    for i, r in enumerate(responses):
                        full = choice(i, r.text, r.finish_reason)
                        yield chunk(i, {"role": "assistant", "content": ""})
                        yield chunk(i, {k: v for k, v in full["message"].items() if k != "role"})
                        yield chunk(i, {}, full["finish_reason"])
                        completion_tokens += r.completion_tokens
                else:
                    for i in range(n):
                        yield chunk(i, {"role": "assistant", "content": ""})
                        cutter, raw = StopCutter(stops), ""
                        async with contextlib.aclosing(pieces()) as stream:
                            async for piece in stream:
                                raw += piece
                                delta = cutter.feed(piece)
                                if delta:
                                    yield chunk(i, {"content": delta})
                                if cutter.stopped:
                                    break
                        tail = cutter.finish()
                        if tail:
                            yield chunk(i, {"content": tail})
                        used = await run_in_threadpool(count_tokens, engine, raw)
                        completion_tokens += used
                        reason = "length" if not cutter.stopped and max_new and used >= max_new else "stop"
                        yield chunk(i, {}, reason)
                if include_usage:
                    p = prompt_tokens or 0
                    yield _sse({**head, "object": "chat.completion.chunk", "choices": [],
                                "usage": {"prompt_tokens": p, "completion_tokens": completion_tokens,
                                          "total_tokens": p + completion_tokens}})
            except APIError as exc:
                yield _sse(exc.body())
            except Exception as exc:  # headers are sent: report in-band, as OpenAI does
                logger.exception("streaming failed")
                yield _sse(APIError(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error").body())
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app
