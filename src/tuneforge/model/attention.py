"""Attention for padding-free rows: every sample attends only to itself.

A padding-free row ([1, T], several samples end to end, data/collate.py) carries the sample
boundaries as `cu_seq_lens_q` (also derivable from the restarting `position_ids`). transformers'
own kernels only read them for flash-attn, which has no PyPI wheel; for everything else they would
build a T x T block-diagonal mask. So we register one more attention implementation with
transformers' AttentionInterface ("tuneforge_varlen"):

- on CUDA in bf16/fp16, PyTorch's own variable-length flash kernel (`torch.nn.attention.varlen`);
- elsewhere (CPU, fp32), causal SDPA per sample: the same isolation, no mask, O(sum of len^2).

Batches that are not padding-free rows (padded eval batches, generation with a cache) go to
transformers' SDPA unchanged, so a model loaded with this implementation still chats and predicts.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

VARLEN = "tuneforge_varlen"
# Set on an attention layer whose CUDA kernel call failed: that layer goes on with per-sample SDPA.
KERNEL_FAILED = "_tuneforge_varlen_failed"


def register() -> str:
    """Make "tuneforge_varlen" a valid `attn_implementation` (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(VARLEN, varlen_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN, _mask)
    return VARLEN


def _mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    """No mask for padding-free rows (boundaries travel as cu_seq_lens); SDPA's mask otherwise."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def _boundaries(kwargs: dict[str, Any], total: int) -> Any:
    """cu_seq_lens from the collator, else from restarting position_ids; None for one plain sequence."""
    import torch

    cu = kwargs.get("cu_seq_lens_q")
    if cu is not None:
        return cu
    positions = kwargs.get("position_ids")
    if positions is None or positions.shape[-1] != total:
        return None
    starts = torch.nonzero(positions.reshape(-1) == 0).flatten()
    if starts.numel() <= 1:
        return None
    return torch.cat([starts, starts.new_tensor([total])]).to(torch.int32)


def varlen_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                     dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers attention signature: q [1, Hq, T, D], k/v [1, Hkv, T, D] -> ([1, T, Hq, D], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    packed_row = attention_mask is None and query.shape[0] == 1 and query.shape[2] == key.shape[2]
    cu = _boundaries(kwargs, query.shape[2]) if packed_row else None
    if cu is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    dropout = dropout if module.training else 0.0
    max_len = kwargs.get("max_length_q") or int((cu[1:] - cu[:-1]).max())
    half = str(query.dtype) in ("torch.bfloat16", "torch.float16")  # the flash kernel has no fp32
    use_kernel = query.is_cuda and half and dropout == 0.0 and _cuda_varlen() is not None
    return _attend(module, query, key, value, cu, max_len, scaling, dropout, use_kernel), None


def _attend(module: Any, query: Any, key: Any, value: Any, cu: Any, max_len: int, scaling: float, dropout: float,
            use_kernel: bool) -> Any:
    """The CUDA kernel when usable; if it fails (say, a head size this torch build lacks), one
    warning and per-sample SDPA for the rest of the run instead of a crash mid-training. The
    failure is remembered on the attention layer itself (`KERNEL_FAILED`), not process-wide."""
    import torch

    if use_kernel and not getattr(module, KERNEL_FAILED, False):
        try:
            return _cuda_kernel(query, key, value, cu, max_len, scaling)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            setattr(module, KERNEL_FAILED, True)
            import warnings

            warnings.warn(f"tuneforge: PyTorch's varlen attention kernel failed ({str(exc).splitlines()[0]}); "
                          "using per-sample SDPA for the rest of the run", stacklevel=2)
    return _per_sample(query, key, value, cu, scaling, dropout)


def _per_sample(query: Any, key: Any, value: Any, cu: Any, scaling: float, dropout: float) -> Any:
    """Causal SDPA sample by sample; exact, device-independent; the reference the kernel is tested against."""
    import torch
    import torch.nn.functional as F

    gqa = query.shape[1] != key.shape[1]
    bounds = cu.tolist()
    outs = [F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True,
                                           dropout_p=dropout, scale=scaling, enable_gqa=gqa)
            for s, e in zip(bounds[:-1], bounds[1:]) if e > s]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous()


@functools.lru_cache(maxsize=1)
def _cuda_varlen() -> Any:
    """PyTorch's varlen flash kernel and the keyword names this torch version uses (2.10 vs 2.13+)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def _cuda_kernel(query: Any, key: Any, value: Any, cu: Any, max_len: int, scaling: float) -> Any:
    import torch

    fn, params = _cuda_varlen()
    q = query[0].transpose(0, 1).contiguous()  # [T, Hq, D]
    k = key[0].transpose(0, 1).contiguous()
    v = value[0].transpose(0, 1).contiguous()
    kw: dict[str, Any] = {}
    if "window_size" in params:
        kw["window_size"] = (-1, 0)  # causal
    else:
        kw["is_causal"] = True
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in params:
            kw["enable_gqa"] = True
        else:
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    if "scale" in params:
        kw["scale"] = scaling
    elif abs(scaling - q.shape[-1] ** -0.5) > 1e-12:
        q = q * (scaling * q.shape[-1] ** 0.5)
    cu = cu.to(device=q.device, dtype=torch.int32)
    out = fn(q, k, v, cu, cu, max_len, max_len, **kw)
    return out.unsqueeze(0)  # [1, T, Hq, D]


def flash_attn_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


@dataclass(frozen=True)
class AttentionChoice:
    """What every loader passes to from_pretrained, decided once per run (model/kernels.py)."""

    implementation: str | None  # attn_implementation; None = transformers' default (sdpa)
    label: str                  # what the log says
    note: str = ""              # a switch this machine cannot honour, and what is used instead


def choose_attention(flash_attn: str, device: str, padding_free: bool) -> AttentionChoice:
    """LLaMA-Factory's `flash_attn` (auto | sdpa | eager | fa2 | disabled) on this device.

    `fa2` without flash-attn on a CUDA GPU falls back to PyTorch's kernels with a note (which also
    isolate samples), so one YAML runs anywhere and no loader ever asks transformers for it."""
    note = ""
    if flash_attn == "fa2":
        if device == "cuda" and flash_attn_installed():
            return AttentionChoice("flash_attention_2", "flash-attn varlen")
        note = "flash_attn: fa2 needs flash-attn on a CUDA GPU; using PyTorch's attention instead"
        flash_attn = "auto"
    if flash_attn in ("sdpa", "eager", "disabled"):
        impl = "sdpa" if flash_attn == "sdpa" else "eager"
        return AttentionChoice(impl, f"{impl} (samples isolated by a block-diagonal mask)" if padding_free else impl)
    if not padding_free:
        return AttentionChoice(None, "sdpa", note)
    if device == "cuda" and flash_attn_installed():
        return AttentionChoice("flash_attention_2", "flash-attn varlen", note)
    register()
    if device == "cuda" and _cuda_varlen() is not None:
        return AttentionChoice(VARLEN, "PyTorch varlen flash kernel", note)
    return AttentionChoice(VARLEN, "per-sample SDPA", note)
