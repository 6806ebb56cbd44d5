"""Vision batches on the GPU: the padding-free row of samples with pictures (data/collate.py VisionRowCollator) vs
their padded batch, bf16 autocast over fp32 weights, text attention through the run's kernel (PyTorch's varlen
kernel or flash-attn), the vision tower through SDPA. On the CPU (fp32) it checks the script itself."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

MODELS = {"vision_qwen2_vl": "tuneforge/tiny-qwen2-vl", "vision_llava": "tuneforge/tiny-llava"}


def _trained_token_losses(model, batch: dict) -> torch.Tensor:
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
    targets = batch["labels"][:, 1:].reshape(-1)
    keep = targets != -100
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1])[keep], targets[keep], reduction="none")


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])


def check_vision(name: str, report) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vl_batches import samples  # bench/vl_batches.py: generated records with 0-2 pictures, encoded

    from tuneforge.data.collate import VisionRowCollator, padded_collator
    from tuneforge.data.encode.multimodal import vision_collator
    from tuneforge.model import attention
    from tuneforge.model.load import Precision, load_model
    from tuneforge.model.mrope import rope_index

    device, dtype = ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)
    cfg, template, columns = samples(MODELS[name], 8, Path(tempfile.mkdtemp()))
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    precision = Precision(torch.float32, dtype == torch.bfloat16, False, device)
    choice = attention.choose_attention("auto", device, padding_free=True)
    reference = load_model(cfg.model, precision, attn_implementation="sdpa").to(device)
    model = load_model(cfg.model, precision, attn_implementation=choice.implementation).to(device)
    padded = vision_collator(template, padded_collator(template.tokenizer, device))
    calls = []
    kernel = attention._cuda_kernel
    attention._cuda_kernel = lambda *a, **kw: calls.append(1) or kernel(*a, **kw)  # count the kernel's use
    moved = lambda batch: {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}  # noqa: E731
    with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        expected = _trained_token_losses(reference, moved(padded(rows)))
        got = _trained_token_losses(model, moved(VisionRowCollator(padded, rope_index(model))(rows)))
    expected.sum().backward()
    got.sum().backward()
    rel = ((got - expected).abs() / expected.abs().clamp_min(1e-6)).max().item()
    cos = F.cosine_similarity(_grads(model).double(), _grads(reference).double(), dim=0).item()
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    used = device != "cuda" or bool(calls) or choice.implementation == "flash_attention_2"
    report(name, rel < tol and cos > 1 - tol and used,
           f"{MODELS[name]} padding-free vs padded ({str(dtype)[6:]}, {choice.label}): per-token loss max rel diff "
           f"{rel:.2e} over {len(got)} tokens, grad cosine {cos:.6f}, varlen kernel calls {len(calls)}")
