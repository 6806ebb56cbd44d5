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

Every answer comes from `engine.stream()` (see infer.base.Engine): the backend batches concurrent
requests (transformers' continuous batching, vLLM's engine) and generates off the event loop; a
non-streamed answer is its pieces collected, n choices are n concurrent streams. A client that
disconnects cancels its generation: a stream is closed when Starlette notices, a non-streamed request
is watched with `request.is_disconnected()`. Limits (body, prompt, max_tokens, queue, drain) are in
`limits.py`. Every error, bad input included, is JSON in OpenAI's shape:
{"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneforge.config.errors import TuneforgeError
from tuneforge.data.example import Message
from tuneforge.infer.answer import prompt_ids
from tuneforge.infer.base import Piece, Response
from tuneforge.serve.limits import Gate, Limits, Traffic, answer_tokens, check_prompt, read_body
from tuneforge.serve.protocol import (
    APIError,
    ChatCompletionRequest,
    generation_overrides,
    parse_tool_calls,
    stop_list,
    has_images,
    request_images,
    to_conversation,
    validation_error,
)

logger = logging.getLogger("tuneforge.serve")

OPEN_PATHS = {"/health"}  # reachable without the API key (liveness probes; reveals nothing)
DISCONNECT_POLL_SECONDS = 0.25  # how often a non-streamed request checks that its client is still there


async def parse_request(request: Request, max_bytes: int) -> ChatCompletionRequest:
    """The body (413 past `max_bytes`) as JSON whatever the Content-Type says (`curl -d` sends
    form-encoded), then validated."""
    body = await read_body(request, max_bytes)
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


def count_tokens(engine: Any, text: str) -> int:
    """Prompt tokens as the engine will see them (words for an engine without a tokenizer)."""
    tok = getattr(engine, "tokenizer", None)
    return len(prompt_ids(tok, text)) if tok is not None else len(text.split())


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


# ---------------------------------------------------------------------------- the engine
class EngineCalls:
    """The engine as the server uses it: prompt token counts off the event loop, and answers from
    `engine.stream()`, which the backend batches across concurrent requests."""

    def __init__(self, engine: Any, limits: Limits, traffic: Traffic):
        self.engine, self.limits, self.traffic = engine, limits, traffic
        self.default_max = getattr(getattr(engine, "generation_cfg", None), "max_new_tokens", None)
        self.context: int | None = getattr(engine, "context_length", None)

    async def prompt_tokens(self, messages: list[Message], system: str | None, tools: str | None) -> int | None:
        """Tokens of the rendered prompt (None for an engine that renders none); 400 when the
        template cannot render the conversation."""
        if not hasattr(self.engine, "prompt_text"):
            return None
        try:
            prompt = await run_in_threadpool(self.engine.prompt_text, messages, system, tools)
        except (TuneforgeError, ValueError, LookupError, TypeError) as exc:
            raise APIError(400, f"the chat template cannot render these messages: {exc}") from None
        return await run_in_threadpool(count_tokens, self.engine, prompt)

    def stream(self, messages: list[Message], system: str | None, tools: str | None,
               overrides: dict[str, Any]) -> AsyncIterator[Piece]:
        return until_closing(self.engine.stream(messages, system, tools, **overrides), self.traffic.closing)

    async def answer(self, messages: list[Message], system: str | None, tools: str | None,
                     overrides: dict[str, Any]) -> Response:
        async with contextlib.aclosing(self.stream(messages, system, tools, overrides)) as pieces:
            async for piece in pieces:
                if piece.response is not None:
                    return piece.response
        raise RuntimeError("the engine ended an answer without its final piece")

    async def generate(self, messages: list[Message], system: str | None, tools: str | None, n: int,
                       overrides: dict[str, Any]) -> list[Response]:
        """n whole answers, generated together (the engine batches them); cancelled together."""
        tasks = [asyncio.ensure_future(self.answer(messages, system, tools, overrides)) for _ in range(n)]
        try:
            return list(await asyncio.gather(*tasks))
        except APIError:
            raise
        except Exception as exc:
            logger.exception("generation failed")
            raise APIError(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error") from None
        finally:
            for task in tasks:
                task.cancel()


async def until_closing(pieces: AsyncIterator[Piece], closing: asyncio.Event) -> AsyncIterator[Piece]:
    """`pieces` until the server's drain time is up: then the answer ends with a 503 (in-band for a stream)
    and its generation is cancelled, so the client gets an answer rather than a cut connection."""
    stop = asyncio.ensure_future(closing.wait())
    step: asyncio.Future[Any] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(pieces, None))
            await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                raise APIError(503, "the server shut down before this answer was complete", "server_error",
                               "shutting_down")
            piece = step.result()
            if piece is None:
                return
            yield piece
    finally:
        stop.cancel()
        if step is not None and not step.done():
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)
        await pieces.aclose()


async def unless_disconnected(request: Request, work: Awaitable[Any]) -> Any:
    """`work`'s result; cancelled (its generation with it) as soon as the client disconnects. Streams
    need no watch: Starlette cancels a streaming response whose client left."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise APIError(499, "the client closed the request", code="client_closed_request")
    finally:
        task.cancel()


# ---------------------------------------------------------------------------- one request
class ChatCompletion:
    """One POST /v1/chat/completions request: a JSON answer, or an SSE stream of text deltas (or, with
    tools, of the complete answer once it is known)."""

    def __init__(self, calls: EngineCalls, model_name: str, req: ChatCompletionRequest):
        self.calls, self.req = calls, req
        self.messages, self.system, self.tools = to_conversation(req)
        self.overrides = generation_overrides(req, stop_list(req.stop))
        if has_images(req):
            if getattr(getattr(calls.engine, "template", None), "images", None) is None:
                raise APIError(400, "this model does not take images (a vision-language model does)",
                               param="messages")
            self.overrides["images"] = request_images(req)
        self.n = req.n or 1
        self.prompt_tokens: int | None = None
        self.completion_tokens = 0
        self.head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model_name,
                     "system_fingerprint": None}

    @classmethod
    async def read(cls, calls: EngineCalls, model_name: str, request: Request) -> ChatCompletion:
        """The request checked against the limits and mapped onto the engine (APIError for what cannot be
        served)."""
        completion = cls(calls, model_name, await parse_request(request, calls.limits.body_bytes))
        prompt_tokens = await calls.prompt_tokens(completion.messages, completion.system, completion.tools)
        if prompt_tokens is not None:
            check_prompt(prompt_tokens, calls.limits, calls.context)
        requested = completion.req.max_completion_tokens or completion.req.max_tokens
        max_new = answer_tokens(requested, calls.default_max, prompt_tokens, calls.limits, calls.context)
        if max_new is not None:
            completion.overrides["max_new_tokens"] = max_new
        completion.prompt_tokens = prompt_tokens
        return completion

    async def respond(self, request: Request) -> Any:
        if not self.req.stream:
            return await unless_disconnected(request, self.complete())
        return StreamingResponse(self.events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def generate(self) -> list[Response]:
        return await self.calls.generate(self.messages, self.system, self.tools, self.n, self.overrides)

    def choice(self, index: int, text: str, reason: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if self.tools:
            content, calls = parse_tool_calls(text)
            if calls:
                message, reason = {"role": "assistant", "content": content, "tool_calls": calls}, "tool_calls"
        return {"index": index, "message": message, "logprobs": None, "finish_reason": reason}

    def usage(self, prompt_tokens: int) -> dict[str, int]:
        return {"prompt_tokens": prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": prompt_tokens + self.completion_tokens}

    async def complete(self) -> dict[str, Any]:
        responses = await self.generate()
        used = self.prompt_tokens if self.prompt_tokens is not None else responses[0].prompt_tokens
        self.completion_tokens = sum(r.completion_tokens for r in responses)
        return {**self.head, "object": "chat.completion",
                "choices": [self.choice(i, r.text, r.finish_reason) for i, r in enumerate(responses)],
                "usage": self.usage(used)}

    # ------------------------------------------------------------------ streaming
    def chunk(self, index: int, delta: dict[str, Any], reason: str | None = None) -> str:
        return _sse({**self.head, "object": "chat.completion.chunk",
                     "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}]})

    async def tool_events(self) -> AsyncIterator[str]:
        """A tool call is only known once the answer is complete: generate, then send each choice whole."""
        for i, r in enumerate(await self.generate()):
            full = self.choice(i, r.text, r.finish_reason)
            yield self.chunk(i, {"role": "assistant", "content": ""})
            yield self.chunk(i, {k: v for k, v in full["message"].items() if k != "role"})
            yield self.chunk(i, {}, full["finish_reason"])
            self.completion_tokens += r.completion_tokens

    async def text_events(self, index: int) -> AsyncIterator[str]:
        """Choice `index` as the engine streams it: one delta per piece, then the finish reason. When the
        client leaves, Starlette cancels this generator and closing the engine's stream cancels the
        generation."""
        yield self.chunk(index, {"role": "assistant", "content": ""})
        response = None
        async with contextlib.aclosing(self.calls.stream(self.messages, self.system, self.tools,
                                                         self.overrides)) as pieces:
            async for piece in pieces:
                if piece.text:
                    yield self.chunk(index, {"content": piece.text})
                response = piece.response or response
        if response is None:
            raise RuntimeError("the engine ended an answer without its final piece")
        self.completion_tokens += response.completion_tokens
        if self.prompt_tokens is None:
            self.prompt_tokens = response.prompt_tokens
        yield self.chunk(index, {}, response.finish_reason)

    async def events(self) -> AsyncIterator[str]:
        try:
            if self.tools:
                async for event in self.tool_events():
                    yield event
            else:
                for i in range(self.n):
                    async for event in self.text_events(i):
                        yield event
            if self.req.stream_options and self.req.stream_options.include_usage:
                yield _sse({**self.head, "object": "chat.completion.chunk", "choices": [],
                            "usage": self.usage(self.prompt_tokens or 0)})
        except APIError as exc:
            yield _sse(exc.body())
        except Exception as exc:  # headers are sent: report in-band, as OpenAI does
            logger.exception("streaming failed")
            yield _sse(APIError(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error").body())
        yield "data: [DONE]\n\n"


# ---------------------------------------------------------------------------- the app
def add_error_handlers(app: FastAPI) -> None:
    """Every error, bad input included, as OpenAI-shaped JSON."""

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


def add_model_routes(app: FastAPI, model_name: str) -> None:
    """/health and the one-model /v1/models listing."""
    card = {"id": model_name, "object": "model", "created": int(time.time()), "owned_by": "tuneforge"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id != model_name:
            raise APIError(404, f"The model '{model_id}' does not exist (this server has '{model_name}')",
                           "invalid_request_error", "model_not_found", "model")
        return card


def create_app(engine: Any, model_name: str, api_key: str | None = None, limits: Limits | None = None) -> FastAPI:
    """The FastAPI app serving `engine` (anything with `stream`, see infer.base.Engine) within `limits`;
    `app.state.traffic` counts the chat completions in flight and is what a drain sets."""
    from tuneforge import __version__

    limits = limits or Limits()
    app = FastAPI(title="tuneforge OpenAI-compatible API", version=__version__)
    app.state.traffic = Traffic()
    app.add_middleware(Gate, traffic=app.state.traffic, queue=limits.queue)
    if api_key:  # added last, so it runs first: nobody without the key learns the server's load
        app.add_middleware(KeyAuth, api_key=api_key)
    add_error_handlers(app)
    add_model_routes(app, model_name)
    calls = EngineCalls(engine, limits, app.state.traffic)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        completion = await ChatCompletion.read(calls, model_name, request)
        return await completion.respond(request)

    return app
