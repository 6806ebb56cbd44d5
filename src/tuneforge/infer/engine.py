"""Pick the inference backend: `infer_backend: huggingface` (default) or `vllm` (when installed).
Every backend implements `tuneforge.infer.base.Engine`."""

from __future__ import annotations

from tuneforge.config.schema import DataConfig, GenerateConfig, ModelConfig
from tuneforge.infer.base import Engine


def create_engine(model: ModelConfig, data: DataConfig, generation: GenerateConfig, serving: bool = False) -> Engine:
    """The engine for `model` (+ its adapters), rendering with `data`'s template, generating with `generation`;
    `serving=True` (the API server) readies it for many concurrent `stream()` calls, batched by the backend."""
    if generation.infer_backend == "vllm":
        from tuneforge.infer.vllm import VLLMEngine

        return VLLMEngine(model, data, generation, serving=serving)
    from tuneforge.infer.hf import HFEngine

    return HFEngine(model, data, generation, serving=serving)
