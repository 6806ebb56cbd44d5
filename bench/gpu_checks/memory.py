"""The memory estimate against real training steps, and vLLM predict after training."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from tuneforge.config.schema import MethodConfig, ModelConfig
from tuneforge.data.collate import PaddingFreeCollator
from tuneforge.model import attention
from tuneforge.model.adapters import apply_method
from tuneforge.model.fused_loss import attach_chunked_loss
from tuneforge.model.memory import estimate_memory

Report = Callable[[str, "bool | None", str], None]
REPO = Path(__file__).resolve().parents[2]


def _build(shape: str, method: MethodConfig, device: str) -> tuple[Any, Any]:
    """A random Qwen2 of `shape`, loaded as tuneforge loads it for `method` (lora/freeze: bf16 base;
    full: fp32 master weights), with its attention and the chunked loss."""
    from gpu_check import SHAPES
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cuda = device == "cuda"
    dtype = torch.bfloat16 if cuda and method.finetuning_type != "full" else torch.float32
    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=32768, rope_theta=1e6, use_cache=False)
    config._attn_implementation = attention.choose_attention("auto", device, padding_free=True).implementation
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the loading dtype: no fp32 copy of a bf16 model first
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model = apply_method(model, method, ModelConfig(model_name_or_path="random"))
    attach_chunked_loss(model)
    return model, config


def _batch(vocab: int, tokens: int, device: str) -> dict:
    """Packed rows of up to 2048 tokens, `tokens` in all: the worst micro-batch a cutoff allows."""
    g = torch.Generator().manual_seed(1)
    rows = []
    for start in range(0, tokens, 2048):
        ids = torch.randint(5, vocab, (min(2048, tokens - start),), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": ids})
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in PaddingFreeCollator()(rows).items()}


def _steps(model: Any, batch: dict, accumulation: int, device: str) -> tuple[int | None, float]:
    """Two optimizer steps of `accumulation` micro-batches each (fused AdamW, zero_grad after the
    step as Trainer does); the peak allocated during the second, and its seconds."""
    cuda = device == "cuda"
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=cuda)
    model.train()
    seconds = 0.0
    for step in range(2):
        if cuda:
            torch.cuda.synchronize()
            if step == 1:
                torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        for _ in range(accumulation):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
                loss = model(**batch).loss
            (loss / accumulation).backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    return (torch.cuda.max_memory_allocated() if cuda else None), seconds


def check_memory(name: str, shape: str, method_kwargs: dict, accumulation: int, tokens: int, report: Report) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    method = MethodConfig(**method_kwargs)
    model, config = _build(shape, method, device)
    try:
        measured, seconds = _steps(model, _batch(config.vocab_size, tokens, device), accumulation, device)
    except torch.OutOfMemoryError:
        return report(name, None, f"{shape}: out of memory on this card")
    est = estimate_memory(config, method, tokens=tokens, dtype_bytes=2 if device == "cuda" else 4,
                          checkpointing=False, fused_loss=True, attention="varlen", autocast=device == "cuda",
                          accumulation=accumulation, device="cpu")  # cpu: no CUDA context / slack terms
    speed = f"{accumulation * tokens / seconds:,.0f} tok/s"
    if measured is None:
        return report(name, None, f"{shape}: predicted {est.peak_bytes / 2**20:,.0f} MiB allocated, measured n/a "
                                  f"without CUDA; {speed}")
    ratio = est.peak_bytes / measured
    report(name, abs(ratio - 1) <= 0.15, f"{shape} {method.finetuning_type}, {tokens} tokens x {accumulation}: "
           f"measured {measured / 2**20:,.0f} MiB allocated, predicted {est.peak_bytes / 2**20:,.0f} MiB "
           f"(x{ratio:.3f}); {speed}")


def check_vllm_predict(report: Report) -> None:
    """Train the tiny model's identity briefly, then predict with vLLM in the same command: the
    trained weights must be gone from the GPU before vLLM sizes its cache."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return report("vllm_predict", None, "vllm not installed")
    if not torch.cuda.is_available():
        return report("vllm_predict", None, "vLLM needs CUDA")
    out = Path(tempfile.mkdtemp()) / "run"
    keys = [f"output_dir={out}", "max_steps=20", "do_predict=true", "predict_with_generate=true",
            "eval_dataset=identity", "max_samples=16", "infer_backend=vllm", "max_new_tokens=16",
            "vllm_gpu_util=0.5", "plot_loss=false"]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "tuneforge", "train", str(REPO / "examples/demo/identity_lora.yaml"),
                             *keys], capture_output=True, text=True, timeout=200)
    predictions = out / "generated_predictions.jsonl"
    ok = result.returncode == 0 and predictions.is_file()
    detail = f"{len(predictions.read_text().splitlines())} predictions" if ok else \
        (result.stderr.strip().splitlines() or ["no output"])[-1][:200]
    report("vllm_predict", ok, f"train + vLLM predict in one command: {detail}, {time.perf_counter() - started:.0f} s")
