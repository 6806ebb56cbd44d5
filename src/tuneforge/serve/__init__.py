"""OpenAI-compatible HTTP serving (`tuneforge api`): `create_app(engine, model_name, api_key, limits)` in
`tuneforge.serve.api` builds the FastAPI app for any inference engine with `stream()` (hf, vllm, or a
test double); `serve.limits` holds the limits (API_MAX_* variables), `serve.server` runs it with a
bounded drain on SIGTERM."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:  # import FastAPI only when the app is actually built
    if name == "create_app":
        from tuneforge.serve.api import create_app

        return create_app
    raise AttributeError(name)
