"""One interface for every inference backend: chat, stream_chat, generate (n, stop, usage), batch_generate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig


@dataclass
class Response:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


def create_engine(cfg: RunConfig) -> Any:
    """`infer_backend: huggingface` (default) or `vllm` (when installed)."""
    if cfg.generate.infer_backend == "vllm":
        from tuneforge.infer.vllm import VLLMEngine

        return VLLMEngine(cfg)
    from tuneforge.infer.hf import HFEngine

    return HFEngine(cfg)


def require_vllm() -> Any:
    try:
        import vllm  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError("infer_backend: vllm needs vLLM (`pip install 'tuneforge[vllm]'` on a CUDA machine); "
                          "or use infer_backend: huggingface") from None
    return vllm
