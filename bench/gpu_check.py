"""The fast path's GPU checks in one minute, before (or instead of) the full benchmark.

    python bench/gpu_check.py                 # on the GPU machine: 1.5b shape, bf16
    python bench/gpu_check.py --shape small   # anywhere (CPU: fp32, checks the script itself)

1. kernel   PyTorch's varlen flash kernel (through model/attention.py) against per-sample SDPA.
2. model    a random Qwen2 with LoRA: per-sample losses and LoRA gradients of a padding-free row
            against the padded batch (bf16 tolerances on a GPU).
3. liger    if installed: the Liger-patched model's loss against our chunked loss on the same row.
4. memory   one real training step (forward, backward, fused AdamW) of the chosen shape at several
            token counts, checkpointing off and on: torch.cuda.max_memory_allocated against
            `tuneforge estimate`'s prediction of allocated memory (its peak minus the CUDA context
            and allocator slack, which max_memory_allocated does not see), and the step's tok/s.
Prints one line per check, `CHECK name ok|FAIL|n/a detail`, and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch
import torch.nn.functional as F

from tuneforge.config.schema import MethodConfig, ModelConfig
from tuneforge.data.collate import PaddingFreeCollator
from tuneforge.model import attention
from tuneforge.model.adapters import apply_method
from tuneforge.model.fused_loss import causal_lm_loss
from tuneforge.model.memory import estimate_memory

SHAPES = {  # ../shared/bench/make_model.py's shapes; "small" runs anywhere in seconds
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=32000, tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=151936, tie_word_embeddings=False),
}
METHOD = MethodConfig(finetuning_type="lora", lora_rank=8, lora_target=["all"])
failed: list[str] = []


def report(name: str, ok: bool | None, detail: str) -> None:
    status = "n/a" if ok is None else "ok" if ok else "FAIL"
    if ok is False:
        failed.append(name)
    print(f"CHECK {name} {status} {detail}", flush=True)


def build(shape: str, device: str, dtype: torch.dtype):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    attention.register()
    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=32768, rope_theta=1e6, use_cache=False)
    config._attn_implementation = attention.VARLEN
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the training dtype: no fp32 copy of a 7b model first
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return apply_method(model, METHOD, ModelConfig(model_name_or_path="random")), config


def check_kernel(device: str) -> None:
    if device != "cuda" or attention._cuda_varlen() is None:
        return report("kernel", None, "no CUDA (or no torch.nn.attention.varlen): per-sample SDPA is used")
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 12, 4096, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(1, 2, 4096, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(1, 2, 4096, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    cu = torch.tensor([0, 700, 2100, 2101, 4096], device="cuda", dtype=torch.int32)
    got = attention._attend(q, k, v, cu, 1995, 128 ** -0.5, 0.0, use_kernel=True)
    ref = attention._per_sample(q.float(), k.float(), v.float(), cu, 128 ** -0.5, 0.0)
    err = (got.float() - ref).abs().max().item()
    report("kernel", not attention._BROKEN and err < 3e-2,
           f"varlen kernel vs per-sample fp32: max |diff| {err:.2e}" + (f"; kernel failed: {attention._BROKEN[0]}"
                                                                      if attention._BROKEN else ""))


def _samples(vocab: int, lengths: tuple[int, ...]) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    out = []
    for n in lengths:
        ids = torch.randint(5, vocab, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * (n // 3) + ids[n // 3:]})
    return out


def check_model(device: str, dtype: torch.dtype) -> None:
    model, config = build("small", device, dtype)
    samples = _samples(config.vocab_size, (37, 300, 5, 128))
    auto = torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32)
    padded_losses, padded_grads = [], None
    model.zero_grad()
    with auto:
        for s in samples:  # one sample at a time = what a padded batch computes for it
            ids = torch.tensor([s["input_ids"]], device=device)
            logits = model(input_ids=ids).logits[0, :-1].float()
            padded_losses.append(F.cross_entropy(logits, torch.tensor(s["labels"][1:], device=device),
                                                 reduction="sum"))
    sum(padded_losses).backward()
    padded_grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad()
    batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in PaddingFreeCollator()(samples).items()}
    with auto:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0].float()
    cu = batch["cu_seq_lens_q"].tolist()
    flat_losses = [F.cross_entropy(logits[s:e - 1], batch["labels"][0, s + 1:e], reduction="sum")
                   for s, e in zip(cu[:-1], cu[1:])]
    sum(flat_losses).backward()
    flat_grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    rel = max(abs(a.item() - b.item()) / max(abs(b.item()), 1e-6) for a, b in zip(flat_losses, padded_losses))
    cos = F.cosine_similarity(flat_grads.float(), padded_grads.float(), dim=0).item()
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    report("model", rel < tol and cos > 1 - tol,
           f"padding-free vs padded ({dtype}): per-sample loss max rel diff {rel:.2e}, LoRA grad cosine {cos:.6f}")

    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        return report("liger", None, "liger-kernel not installed")
    if device != "cuda":
        return report("liger", None, "Liger needs CUDA")
    base = copy.deepcopy(model.get_base_model())
    _apply_liger_kernel_to_instance(model=base)
    with torch.no_grad(), auto:
        ours = causal_lm_loss(model, batch).item()
        theirs = base(**batch).loss.item()
    report("liger", abs(ours - theirs) / abs(ours) < 2e-2, f"Liger loss {theirs:.5f} vs chunked loss {ours:.5f}")


def step_memory(model, batch, checkpointing: bool, device: str) -> tuple[int | None, float]:
    """(peak bytes allocated during a training step, its seconds); on a CPU only the step runs."""
    cuda = device == "cuda"
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    else:
        model.gradient_checkpointing_disable()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-4, fused=True)
    model.train()
    times = []
    for i in range(3):  # the first step allocates the optimizer state; time the last ones
        if cuda:
            if i == 1:
                torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            loss = causal_lm_loss(model, batch)
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return (torch.cuda.max_memory_allocated() if cuda else None), min(times[1:])


def check_memory(shape: str, tokens: list[int], device: str) -> None:
    cuda = device == "cuda"
    model, config = build(shape, device, torch.bfloat16 if cuda else torch.float32)
    for n in tokens:
        lengths = [min(2048, n - i) for i in range(0, n, 2048)]  # packed rows of up to 2048 tokens
        rows = [{"input_ids": s["input_ids"], "labels": s["input_ids"]}
                for s in _samples(config.vocab_size, tuple(lengths))]
        batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in PaddingFreeCollator()(rows).items()}
        for ckpt in (False, True):
            name = f"memory_{n}_{'ckpt' if ckpt else 'nockpt'}"
            try:
                measured, seconds = step_memory(model, batch, ckpt, device)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                report(name, None, "out of memory on this card")
                continue
            est = estimate_memory(config, METHOD, tokens=n, dtype_bytes=2 if cuda else 4, checkpointing=ckpt,
                                  fused_loss=True, attention="varlen", autocast=cuda,
                                  device="cpu")  # device cpu: no CUDA context / allocator slack terms
            speed = f"step {seconds * 1000:.0f} ms = {n / seconds:,.0f} tok/s"
            if measured is None:
                report(name, None, f"{shape}: predicted {est.peak_bytes / 2**20:,.0f} MiB allocated, "
                                   f"measured n/a without CUDA; {speed}")
                continue
            ratio = est.peak_bytes / measured
            report(name, abs(ratio - 1) <= 0.15, f"{shape}: measured {measured / 2**20:,.0f} MiB allocated, "
                   f"predicted {est.peak_bytes / 2**20:,.0f} MiB (x{ratio:.3f}); {speed}")
            if cuda:
                torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1.5b" if torch.cuda.is_available() else "small", choices=SHAPES)
    parser.add_argument("--tokens", default="2048,8192,16384" if torch.cuda.is_available() else "512,2048")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    print(f"META gpu_check torch {torch.__version__}, device "
          f"{torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}", flush=True)
    check_kernel(device)
    check_model(device, dtype)
    check_memory(args.shape, [int(t) for t in args.tokens.split(",")], device)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
