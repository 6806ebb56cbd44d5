"""Attention and loss checks: the varlen kernel, padding-free = padded, Liger = the chunked loss."""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
import torch.nn.functional as F

from tuneforge.config.schema import MethodConfig, ModelConfig
from tuneforge.data.collate import PaddingFreeCollator, padded_collator
from tuneforge.model import attention
from tuneforge.model.adapters import apply_method
from tuneforge.model.fused_loss import attach_chunked_loss

Report = Callable[[str, "bool | None", str], None]
SMALL = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, head_dim=64, vocab_size=32000, tie_word_embeddings=True,
             max_position_embeddings=8192, use_cache=False)
LENGTHS = (37, 300, 5, 128)
MODELS = {  # check -> (config class, extra config, method, weights dtype on a GPU)
    "parity_qwen2_lora": ("Qwen2Config", {}, "lora", torch.bfloat16),
    "parity_qwen2_full": ("Qwen2Config", {}, "full", torch.float32),  # fp32 master weights under bf16 autocast
    "parity_mistral_window": ("MistralConfig", {"sliding_window": 64}, "lora", torch.bfloat16),
}


def _device() -> tuple[str, torch.dtype]:
    return ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)


def check_kernel(report: Report) -> None:
    if not torch.cuda.is_available() or attention._cuda_varlen() is None:
        return report("kernel", None, "no CUDA (or no torch.nn.attention.varlen): per-sample SDPA is used")
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(1, h, 4096, 128, device="cuda", dtype=torch.bfloat16, generator=g) for h in (12, 2, 2))
    cu = torch.tensor([0, 700, 2100, 2101, 4096], device="cuda", dtype=torch.int32)
    errors, layer = [], torch.nn.Module()
    for window in (None, 256):
        span = attention.Span(cu, 1995, 128 ** -0.5, 0.0, window)
        got = attention._attend(layer, q, k, v, span, torch.bfloat16)
        ref = attention._per_sample(q.float(), k.float(), v.float(), span)
        errors.append((got.float() - ref).abs().max().item())
    failed = getattr(layer, attention.KERNEL_FAILED, False)
    report("kernel", not failed and max(errors) < 3e-2,
           f"varlen kernel vs per-sample fp32: max |diff| {errors[0]:.2e} causal, {errors[1]:.2e} window 256"
           + ("; the kernel failed and fell back" if failed else ""))


def _model(name: str, device: str) -> Any:
    import transformers
    from transformers import AutoModelForCausalLM

    class_name, extra, method, weights = MODELS[name]
    weights = weights if device == "cuda" else torch.float32
    config = getattr(transformers, class_name)(**SMALL, **extra)
    choice = attention.choose_attention("auto", device, padding_free=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=weights, attn_implementation=choice.implementation)
    kwargs = {"finetuning_type": method} if method == "full" else {"lora_target": ["all"], "lora_rank": 8}
    return apply_method(model, MethodConfig(**kwargs), ModelConfig(model_name_or_path="random")), config


def _samples(vocab: int) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    out = []
    for n in LENGTHS:
        ids = torch.randint(5, vocab, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * (n // 3) + ids[n // 3:]})
    return out


def _losses_and_grads(model: Any, batch: dict, bounds: list[list[tuple[int, int]]]) -> tuple[list, Any]:
    """Per-sample summed losses (rows of `batch`, spans per row) and the flattened gradients."""
    model.zero_grad()
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
    losses = [F.cross_entropy(logits[r, s:e - 1], batch["labels"][r, s + 1:e], reduction="sum")
              for r, spans in enumerate(bounds) for s, e in spans]
    sum(losses).backward()
    return [x.item() for x in losses], torch.cat([p.grad.flatten().float() for p in model.parameters()
                                                  if p.grad is not None])


def check_parity(name: str, report: Report) -> None:
    """The padded batch (transformers' SDPA with its padding and window mask) is the reference."""
    device, dtype = _device()
    model, config = _model(name, device)
    samples = _samples(config.vocab_size)
    calls = []
    kernel = attention._cuda_kernel
    attention._cuda_kernel = lambda *a, **kw: calls.append(1) or kernel(*a, **kw)  # count the kernel's use
    with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        padded = padded_collator(_tokenizer(), device)([dict(s) for s in samples])
        padded = {k: v.to(device) for k, v in padded.items()}
        ref, ref_g = _losses_and_grads(model, padded, [[(0, len(s["input_ids"]))] for s in samples])
        row = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in PaddingFreeCollator()(samples).items()}
        cu = row["cu_seq_lens_q"].tolist()
        got, got_g = _losses_and_grads(model, row, [list(zip(cu[:-1], cu[1:]))])
    rel = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(got, ref))
    cos = F.cosine_similarity(got_g.double(), ref_g.double(), dim=0).item()
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    used = device != "cuda" or bool(calls)
    report(name, rel < tol and cos > 1 - tol and used,
           f"padding-free vs padded ({str(dtype)[6:]}): per-sample loss max rel diff {rel:.2e}, grad cosine "
           f"{cos:.6f}, varlen kernel calls {len(calls)}" + ("" if used else " (expected the kernel)"))


def _tokenizer() -> Any:
    """The tiny model's tokenizer: padded_collator only needs its padding (ids are not looked up)."""
    from transformers import AutoTokenizer

    from tuneforge.model import tiny

    return AutoTokenizer.from_pretrained(tiny.ensure())


def check_liger(report: Report) -> None:
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        return report("liger", None, "liger-kernel not installed")
    if not torch.cuda.is_available():
        return report("liger", None, "Liger needs CUDA")
    model, config = _model("parity_qwen2_lora", "cuda")
    base = copy.deepcopy(model.get_base_model())
    _apply_liger_kernel_to_instance(model=base)
    attach_chunked_loss(model)
    row = {k: (v.to("cuda") if hasattr(v, "to") else v) for k, v in PaddingFreeCollator()(_samples(32000)).items()}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        ours = model(**row).loss.item()
        theirs = base(**row).loss.item()
    report("liger", abs(ours - theirs) / abs(ours) < 2e-2, f"Liger loss {theirs:.5f} vs chunked loss {ours:.5f}")
