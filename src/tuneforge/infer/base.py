"""What every inference backend shares: the `Response` of one generation, the `Piece`s a served answer
streams in, the `Engine` interface the CLI, the API server and prediction program against, and the guard
around the optional vLLM import."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import GenerateConfig
from tuneforge.data.example import Message


@dataclass
class Response:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


@dataclass
class Piece:
    """One step of a served answer: `text` to append (cut at stop strings and trimmed, so the pieces join to
    the answer); the last piece also carries the whole answer as `response`."""

    text: str
    response: Response | None = None


class Engine(Protocol):
    """chat, stream_chat, generate (n, stop, usage) and batch_generate over one model (+ adapters); `stream`
    is what the API server calls: concurrent calls are batched by the backend, and closing the iterator
    (a client that left) cancels that generation."""

    backend: str
    tokenizer: Any
    generation_cfg: GenerateConfig
    context_length: int | None  # prompt + answer tokens one request may use (None: unknown)

    def stream(self, messages: list[Message], system: str | None = None, tools: str | None = None,
               **overrides: Any) -> AsyncIterator[Piece]: ...

    def close(self) -> None: ...

    def prompt_text(self, messages: list[Message], system: str | None = None, tools: str | None = None) -> str: ...

    def generate(self, messages: list[Message], system: str | None = None, tools: str | None = None, n: int = 1,
                 **overrides: Any) -> list[Response]: ...

    def chat(self, messages: list[Message], system: str | None = None, **overrides: Any) -> str: ...

    def stream_chat(self, messages: list[Message], system: str | None = None, tools: str | None = None,
                    **overrides: Any) -> Iterator[str]: ...

    def batch_generate(self, conversations: list[list[Message]], system: str | None = None, batch_size: int = 8,
                       **overrides: Any) -> list[str]: ...


def require_vllm() -> Any:
    try:
        import vllm  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError("infer_backend: vllm needs vLLM (`pip install 'tuneforge[vllm]'` on a CUDA machine); "
                          "or use infer_backend: huggingface") from None
    return vllm
