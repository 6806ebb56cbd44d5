"""Memory and time of the loss on a real vocabulary: full logits vs tuneforge's chunked linear+CE.

    .venv/bin/python bench/loss_memory.py standard   # F.cross_entropy(hidden @ W.T)
    .venv/bin/python bench/loss_memory.py chunked    # tuneforge.model.fused_loss

One process per mode (peak RSS is per process). Shapes: Qwen2.5-1.5B's lm_head (151,936 x 1,536),
4,096 labelled tokens, fp32, forward + backward to the hidden states (the head frozen, as with LoRA).
Runs on CPU or GPU (on CUDA it reports torch.cuda.max_memory_allocated instead of RSS).
"""

from __future__ import annotations

import resource
import sys
import time

import torch
import torch.nn.functional as F

from tuneforge.model.fused_loss import linear_cross_entropy

mode = sys.argv[1] if len(sys.argv) > 1 else "chunked"
device = "cuda" if torch.cuda.is_available() else "cpu"
tokens, hidden, vocab = 4096, 1536, 151936
torch.manual_seed(0)
weight = torch.empty(vocab, hidden, device=device).normal_(0, 0.02)  # in place: no temporary
states = torch.empty(tokens, hidden, device=device).normal_().requires_grad_()
targets = torch.randint(0, vocab, (tokens,), device=device)


def used() -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if device == "cuda":
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
base = torch.cuda.memory_allocated() / 2**20 if device == "cuda" else used()
started = time.perf_counter()
if mode == "standard":
    loss = F.cross_entropy(states @ weight.t(), targets)
else:
    loss = linear_cross_entropy(states, weight, targets, torch.tensor(tokens, device=device))
loss.backward()
if device == "cuda":
    torch.cuda.synchronize()
print(f"{mode} ({device}): loss {loss.item():.6f}, extra peak {used() - base:,.0f} MiB, "
      f"{time.perf_counter() - started:.2f} s")
