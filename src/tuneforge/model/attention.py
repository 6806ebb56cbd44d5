"""Attention for padding-free rows: every sample attends only to itself.

A padding-free row ([1, T], several samples end to end, data/collate.py) carries the sample
boundaries as `cu_seq_lens_q` (also derivable from the restarting `position_ids`). transformers'
own kernels only read them for flash-attn, which has no PyPI wheel; for everything else they would
build a T x T block-diagonal mask. So we register two more attention implementations with
transformers' AttentionInterface:

- "tuneforge_varlen": on CUDA in half precision (or under half-precision autocast) PyTorch's own
  variable-length flash kernel (`torch.nn.attention.varlen`); elsewhere causal SDPA per sample:
  the same isolation, no mask, O(sum of len^2). A layer's sliding window (Mistral, Phi-3, Qwen2/3
  with `use_sliding_window`, Gemma 3) is honoured in both.
- "tuneforge_varlen_eager": for architectures whose attention SDPA cannot compute (transformers
  marks them `_supports_sdpa = False`: Gemma 2's logit softcapping, gpt-oss's attention sinks), the
  model's own `eager_attention_forward`, called once per sample with a causal (+ window) mask.

Batches that are not padding-free rows (padded eval batches, generation with a cache) go to
transformers' SDPA / the model's eager function unchanged, with the mask transformers builds, so a
model loaded with either implementation still chats and predicts. So does non-causal attention: a
vision-language model's vision tower gets the same implementation and attends over whole images.
"""

from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass
from typing import Any

VARLEN = "tuneforge_varlen"
VARLEN_EAGER = "tuneforge_varlen_eager"
# Set on an attention layer whose CUDA kernel call failed: that layer goes on with per-sample SDPA.
KERNEL_FAILED = "_tuneforge_varlen_failed"


def register() -> None:
    """Make both implementations valid `attn_implementation` values (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask, sdpa_mask

    AttentionInterface.register(VARLEN, varlen_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN, _unless_one_row(sdpa_mask))
    AttentionInterface.register(VARLEN_EAGER, varlen_eager_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN_EAGER, _unless_one_row(eager_mask))


def _unless_one_row(make_mask: Any) -> Any:
    """No mask for one unpadded row without a cache (a padding-free row, or one plain sequence): the
    attention functions below find the samples themselves. transformers' own mask otherwise (it
    holds the padding, the cache offset and the sliding window)."""

    def mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
        q_len = kwargs.get("q_length")
        if q_len is None and kwargs.get("cache_position") is not None:  # transformers < 5.20 passes positions
            q_len = kwargs["cache_position"].shape[0]
        one_row = kwargs.get("batch_size") == 1 and q_len == kwargs.get("kv_length")
        if attention_mask is None and one_row:
            return None
        return make_mask(*args, attention_mask=attention_mask, **kwargs)

    return mask


def _boundaries(module: Any, query: Any, key: Any, attention_mask: Any, kwargs: dict[str, Any]) -> Any:
    """Sample boundaries of a batch that is one unpadded row without a cache: cu_seq_lens from the
    collator, else the restarting position_ids, else the row is one sample. None for anything else,
    non-causal attention included: a vision tower loaded with our implementation (a vision-language
    model's sub-configs all get it) attends over whole images, with its own per-image splits."""
    import torch

    total = query.shape[2]
    if attention_mask is not None or query.shape[0] != 1 or key.shape[2] != total:
        return None
    if not kwargs.get("is_causal", getattr(module, "is_causal", True)):
        return None
    cu = kwargs.get("cu_seq_lens_q")
    if cu is not None:
        return cu
    positions = kwargs.get("position_ids")
    starts = torch.zeros(1, dtype=torch.long, device=query.device)
    if positions is not None and positions.shape[-1] == total:
        starts = torch.nonzero(positions.reshape(-1) == 0).flatten()
        if starts.numel() == 0 or starts[0] != 0:
            starts = torch.cat([starts.new_zeros(1), starts])
    return torch.cat([starts, starts.new_tensor([total])]).to(torch.int32)


def varlen_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                     dropout: float = 0.0, scaling: float | None = None, sliding_window: int | None = None,
                     **kwargs: Any) -> tuple[Any, None]:
    """transformers attention signature: q [1, Hq, T, D], k/v [1, Hkv, T, D] -> ([1, T, Hq, D], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
        raise RuntimeError(f"{type(module).__name__} uses attention softcapping or sinks, which SDPA cannot compute: "
                           f"it must be loaded with attn_implementation={VARLEN_EAGER!r} (model/attention.py)")
    cu = _boundaries(module, query, key, attention_mask, kwargs)
    if cu is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, sliding_window=sliding_window, **kwargs)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    dropout = dropout if module.training else 0.0
    max_len = kwargs.get("max_length_q") or int((cu[1:] - cu[:-1]).max())
    span = Span(cu, max_len, scaling, dropout, sliding_window)
    return _attend(module, query, key, value, span, _kernel_dtype(query, dropout, span)), None


@dataclass(frozen=True)
class Span:
    """How one padding-free row is attended: its sample boundaries and the layer's settings."""

    cu: Any                   # int32 [samples + 1]
    max_len: int
    scaling: float
    dropout: float
    window: int | None = None  # keys a query sees, itself included (transformers' sliding_window)

    def windowed(self, length: int) -> bool:
        return self.window is not None and length > self.window

    def bounds(self) -> list[tuple[int, int]]:
        edges = self.cu.tolist()
        return [(s, e) for s, e in zip(edges[:-1], edges[1:]) if e > s]


def on_gpu(tensor: Any) -> bool:
    return tensor.is_cuda


def _kernel_dtype(query: Any, dropout: float, span: Span) -> Any:
    """The half-precision dtype PyTorch's flash kernel should run in, or None for per-sample SDPA.

    Full fine-tuning keeps fp32 master weights, so rotary cos/sin and q/k arrive in fp32 even under
    bf16 autocast (autocast casts matmuls, not the elementwise rotary math): the autocast dtype is the
    compute dtype then, and q/k/v are cast to it before the kernel (as autocast would for SDPA)."""
    import torch

    found = _cuda_varlen()
    if not on_gpu(query) or dropout or found is None:
        return None
    if span.windowed(span.max_len) and "window_size" not in found[1]:
        return None  # torch 2.10's kernel has no window
    half = (torch.bfloat16, torch.float16)
    if query.dtype in half:
        return query.dtype
    device = query.device.type
    if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) in half:
        return torch.get_autocast_dtype(device)
    return None


def _attend(module: Any, query: Any, key: Any, value: Any, span: Span, kernel_dtype: Any) -> Any:
    """The CUDA kernel when usable; if it fails (say, a head size this torch build lacks), one
    warning and per-sample SDPA for the rest of the run instead of a crash mid-training. The
    failure is remembered on the attention layer itself (`KERNEL_FAILED`), not process-wide."""
    import torch

    if kernel_dtype is not None and not getattr(module, KERNEL_FAILED, False):
        try:
            return _cuda_kernel(query.to(kernel_dtype), key.to(kernel_dtype), value.to(kernel_dtype), span)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, NotImplementedError, TypeError) as exc:
            setattr(module, KERNEL_FAILED, True)
            import warnings

            warnings.warn(f"tuneforge: PyTorch's varlen attention kernel failed ({str(exc).splitlines()[0]}); "
                          "using per-sample SDPA for the rest of the run", stacklevel=2)
    return _per_sample(query, key, value, span)


def causal_mask(length: int, window: int | None, device: Any) -> Any:
    """[length, length] bool, True where a query may see a key: itself and earlier ones, at most
    `window` keys (transformers' sliding window: key > query - window)."""
    import torch

    idx = torch.arange(length, device=device)
    allowed = idx[None, :] <= idx[:, None]
    if window is not None:
        allowed &= idx[None, :] > idx[:, None] - window
    return allowed


def _per_sample(query: Any, key: Any, value: Any, span: Span) -> Any:
    """Causal SDPA sample by sample; exact, device-independent; the reference the kernel is tested against."""
    import torch
    import torch.nn.functional as F

    gqa = query.shape[1] != key.shape[1]
    outs = []
    for s, e in span.bounds():
        mask = causal_mask(e - s, span.window, query.device) if span.windowed(e - s) else None
        outs.append(F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e],
                                                   attn_mask=mask, is_causal=mask is None, dropout_p=span.dropout,
                                                   scale=span.scaling, enable_gqa=gqa))
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous()


def varlen_eager_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                           dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """The model's own eager attention (softcapping, sinks and all), run once per sample of a
    padding-free row with a causal (+ window) additive mask; anything else goes to it whole."""
    import torch

    eager = model_eager_attention(module)
    cu = _boundaries(module, query, key, attention_mask, kwargs)
    if cu is None:
        return eager(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    window = kwargs.get("sliding_window")
    outs = []
    for s, e in Span(cu, 0, 0.0, 0.0).bounds():
        allowed = causal_mask(e - s, window, query.device)
        mask = torch.zeros(allowed.shape, dtype=query.dtype, device=query.device)
        mask = mask.masked_fill(~allowed, torch.finfo(query.dtype).min)[None, None]
        out, _ = eager(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], mask, dropout=dropout,
                       scaling=scaling, **kwargs)
        outs.append(out)
    return torch.cat(outs, dim=1), None


def model_eager_attention(module: Any) -> Any:
    """`eager_attention_forward` of the module's own modeling file (every transformers architecture
    defines one, with its softcapping or sinks)."""
    found = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if found is None:
        raise RuntimeError(f"{type(module).__module__} defines no eager_attention_forward; "
                           "set flash_attn: eager (transformers' own masks) for this model")
    return found


@functools.lru_cache(maxsize=1)
def _cuda_varlen() -> Any:
    """PyTorch's varlen flash kernel and the keyword names this torch version uses (2.10 vs 2.13+)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def _cuda_kernel(query: Any, key: Any, value: Any, span: Span) -> Any:
    import torch

    fn, params = _cuda_varlen()
    q = query[0].transpose(0, 1).contiguous()  # [T, Hq, D]
    k = key[0].transpose(0, 1).contiguous()
    v = value[0].transpose(0, 1).contiguous()
    kw: dict[str, Any] = {}
    if "window_size" in params:  # (left, right): a query sees `left` earlier keys and itself
        kw["window_size"] = (span.window - 1 if span.windowed(span.max_len) else -1, 0)
    else:
        kw["is_causal"] = True
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in params:
            kw["enable_gqa"] = True
        else:
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    scaling = span.scaling
    if "scale" in params:
        kw["scale"] = scaling
    elif abs(scaling - q.shape[-1] ** -0.5) > 1e-12:
        q = q * (scaling * q.shape[-1] ** 0.5)
    cu = span.cu.to(device=q.device, dtype=torch.int32)
    out = fn(q, k, v, cu, cu, span.max_len, span.max_len, **kw)
    return out.unsqueeze(0)  # [1, T, Hq, D]


def flash_attn_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None


def needs_eager(model_config: Any) -> bool:
    """The architecture's attention is beyond SDPA (transformers' `_supports_sdpa = False`: softcapping,
    sinks) or the config switches softcapping on. Unknown (remote-code) architectures: assumed not."""
    if model_config is None:
        return False
    if getattr(model_config, "attn_logit_softcapping", None):
        return True
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(model_config)]
    except (KeyError, ValueError):
        return False
    return not getattr(model_class, "_supports_sdpa", True)


@dataclass(frozen=True)
class AttentionChoice:
    """What every loader passes to from_pretrained, decided once per run (model/kernels.py)."""

    implementation: str | None  # attn_implementation; None = transformers' default (sdpa)
    label: str                  # what the log says
    note: str = ""              # a switch this machine cannot honour, and what is used instead


def choose_attention(flash_attn: str, device: str, padding_free: bool, eager_only: bool = False) -> AttentionChoice:
    """LLaMA-Factory's `flash_attn` (auto | sdpa | eager | fa2 | disabled) on this device.

    `fa2` without flash-attn on a CUDA GPU falls back to PyTorch's kernels with a note (which also
    isolate samples), so one YAML runs anywhere and no loader ever asks transformers for it.
    `eager_only` (needs_eager): the architecture's attention is beyond SDPA and PyTorch's kernel.

    Padding-free rows always go through the per-sample implementations above, `sdpa` and `eager`
    included (as SDPA per sample and the model's eager per sample): transformers isolates packed
    samples only in architectures that hand position_ids to their mask builder, and some do not
    (gpt-oss: its packed samples would see each other), while ours read the boundaries directly."""
    note = ""
    if flash_attn == "fa2":
        if device == "cuda" and flash_attn_installed():
            return AttentionChoice("flash_attention_2", "flash-attn varlen")
        note = "flash_attn: fa2 needs flash-attn on a CUDA GPU; using PyTorch's attention instead"
        flash_attn = "auto"
    if flash_attn == "sdpa" and eager_only:
        note = "flash_attn: sdpa cannot compute this model's attention (softcapping or sinks); using eager"
        flash_attn = "eager"
    if not padding_free:
        implementation = {"sdpa": "sdpa", "eager": "eager", "disabled": "eager"}.get(flash_attn)
        return AttentionChoice(implementation, implementation or "sdpa", note)
    register()
    if eager_only or flash_attn in ("eager", "disabled"):
        why = "softcapping or sinks: no fused kernel computes them here" if eager_only else "flash_attn: eager"
        return AttentionChoice(VARLEN_EAGER, f"the model's eager attention per sample ({why})", note)
    if device == "cuda" and flash_attn == "auto" and flash_attn_installed():
        return AttentionChoice("flash_attention_2", "flash-attn varlen", note)
    if device == "cuda" and _cuda_varlen() is not None:
        return AttentionChoice(VARLEN, "PyTorch varlen flash kernel", note)
    return AttentionChoice(VARLEN, "per-sample SDPA", note)
