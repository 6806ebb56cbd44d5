"""Causal-LM loss without ever materialising the full logits.

A plain forward computes logits for every position ([T, vocab] floats: 1.2 GB for 2k tokens of a
Qwen vocabulary, twice with its gradient). Here the decoder's hidden states are taken directly,
only the positions that have a label are kept (the prompt of an SFT sample has none), and the
lm_head matmul + cross-entropy run a few hundred rows at a time. The gradients of each chunk are
computed in the same pass and kept (a [rows, hidden] tensor, far smaller than logits), so the
backward costs nothing extra and the lm_head matmul is not recomputed.

Liger's fused linear cross-entropy does the same in Triton; it is used instead when installed on a
GPU (model/kernels.py). This one is plain PyTorch, so it runs (and is tested) on every device.
"""

from __future__ import annotations

import functools
from typing import Any

from tuneforge.data.labels import IGNORE_INDEX

CHUNK_BYTES = 256 * 2**20  # fp32 logits of one chunk
# Architectures whose logits are exactly lm_head(final hidden state): no softcapping, scaling or
# router loss added in the causal-LM forward (those keep the standard loss).
SUPPORTED = {"qwen2", "qwen3", "llama", "mistral", "gemma", "phi3", "glm4", "olmo2", "internlm3"}


def chunk_rows(vocab: int) -> int:
    rows = max(64, CHUNK_BYTES // (4 * vocab))
    return 1 << (rows.bit_length() - 1)  # a power of two: friendlier matmul shapes


def compute_dtype(hidden: Any, weight: Any) -> Any:
    """The dtype the head's matmuls run in: autocast's when it is on (bf16/fp16 runs, where full
    fine-tuning keeps the head's weight in fp32), else the weight's own."""
    import torch

    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return weight.dtype


def _linear_ce(hidden: Any, weight: Any, targets: Any, normalizer: Any, grads: bool) -> tuple[Any, Any, Any]:
    """Sum of cross-entropy / normalizer, and (if grads) d/dhidden and d/dweight of it.

    Matmuls run in the compute dtype (autocast does not reach inside an autograd Function's
    in-place ops, so the casts are explicit); logits, softmax and the weight's gradient accumulate
    in fp32 (a bf16 sum over many chunks would lose the small contributions)."""
    import torch

    rows = chunk_rows(weight.shape[0])
    dtype = compute_dtype(hidden, weight)
    w = weight.to(dtype)
    h_all = hidden.to(dtype)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_h = torch.empty_like(h_all) if grads and hidden.requires_grad else None
    grad_w = torch.zeros(weight.shape, dtype=torch.float32 if dtype != weight.dtype else weight.dtype,
                         device=weight.device) if grads and weight.requires_grad else None
    for start in range(0, h_all.shape[0], rows):
        h = h_all[start:start + rows]
        t = targets[start:start + rows]
        logits = (h @ w.t()).float()
        lse = torch.logsumexp(logits, dim=-1)
        total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
        if grad_h is None and grad_w is None:
            continue
        probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
        probs[torch.arange(t.shape[0], device=t.device), t] -= 1.0
        d_logits = probs.div_(normalizer).to(dtype)
        if grad_h is not None:
            grad_h[start:start + rows] = d_logits @ w
        if grad_w is not None and grad_w.dtype == dtype:
            grad_w.addmm_(d_logits.t(), h)
        elif grad_w is not None:
            grad_w += d_logits.t() @ h  # half-precision product, fp32 sum
    loss = total / normalizer
    return (loss, grad_h.to(hidden.dtype) if grad_h is not None else None,
            grad_w.to(weight.dtype) if grad_w is not None else None)


@functools.lru_cache(maxsize=1)
def _function() -> Any:
    """The autograd Function, defined on first use so that importing this module needs no torch."""
    import torch

    class LinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, hidden: Any, weight: Any, targets: Any, normalizer: Any) -> Any:
            loss, grad_h, grad_w = _linear_ce(hidden, weight, targets, normalizer, grads=True)
            ctx.save_for_backward(*(g for g in (grad_h, grad_w) if g is not None))
            ctx.has = (grad_h is not None, grad_w is not None)
            return loss

        @staticmethod
        def backward(ctx: Any, grad_loss: Any) -> Any:
            saved = list(ctx.saved_tensors)
            # the gradients were computed for d(loss) = 1; scale them by what flows back (e.g. fp16 loss scaling)
            grad_h = saved.pop(0).mul_(grad_loss) if ctx.has[0] else None
            grad_w = saved.pop(0).mul_(grad_loss) if ctx.has[1] else None
            return grad_h, grad_w, None, None

    return LinearCrossEntropy


def linear_cross_entropy(hidden: Any, weight: Any, targets: Any, normalizer: Any) -> Any:
    """mean-by-`normalizer` cross-entropy of (hidden @ weight.T) against targets, chunked."""
    import torch

    if not (torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)):
        with torch.no_grad():
            return _linear_ce(hidden, weight, targets, normalizer, grads=False)[0]
    return _function().apply(hidden, weight, targets, normalizer)


def supports_fused_config(config: Any) -> bool:
    """The architecture computes its logits as plain lm_head(final hidden state) (config.json alone)."""
    return getattr(config, "model_type", None) in SUPPORTED and not getattr(config, "final_logit_softcapping", None)


def supports_fused_loss(model: Any) -> bool:
    """True when the model's logits are a bias-free nn.Linear of the final hidden state."""
    import torch

    config = getattr(model, "config", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if getattr(config, "vision_config", None) is not None:  # its decoder alone would skip the image features
        return False
    return (config is not None and supports_fused_config(config)
            and type(head) is torch.nn.Linear and head.bias is None)


def causal_lm_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
    """The loss `model(**inputs).loss` would give (same shift, same -100s, same normaliser);
    `model` is the causal LM itself (not a peft or DDP wrapper)."""
    inputs = dict(inputs)
    labels = inputs.pop("labels")
    hidden = model.get_decoder()(**inputs).last_hidden_state
    shift_labels = labels[:, 1:]
    keep = shift_labels != IGNORE_INDEX
    targets = shift_labels[keep]
    rows = hidden[:, :-1][keep]
    normalizer = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    if hasattr(normalizer, "to"):
        normalizer = normalizer.to(hidden.device)
    return linear_cross_entropy(rows, model.get_output_embeddings().weight, targets, normalizer)


# what the causal LM's forward takes for itself and its decoder does not
_HEAD_ONLY = ("logits_to_keep", "return_dict", "output_attentions", "output_hidden_states")


def attach_chunked_loss(model: Any) -> None:
    """From now on, calling the causal LM with `labels` returns the chunked loss (and no logits), and
    with `answer_mask` the per-row log-probability sums of the masked tokens (`answer_logprob_sums`).

    It goes into the model's own `forward` (the instance's, not the class's) rather than the
    Trainer's compute_loss, so everything that wraps the model runs it as part of its forward:
    peft, accelerate's autocast, and DDP, which prepares its gradient buckets in its own forward
    (calling the decoder around the wrapper would skip that and break the gradient all-reduce).
    Without either the original forward runs (generation, logits). Idempotent."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.forward, "_tuneforge_chunked", False):
        return
    original = base.forward

    @functools.wraps(original)
    def forward(*args: Any, labels: Any = None, num_items_in_batch: Any = None, answer_mask: Any = None,
                **kwargs: Any) -> Any:
        if labels is None and answer_mask is None:
            return original(*args, **kwargs)
        if args:  # input_ids given positionally
            kwargs["input_ids"] = args[0]
        inputs = {k: v for k, v in kwargs.items() if v is not None and k not in _HEAD_ONLY}
        if answer_mask is not None:
            sums, counts = answer_logprob_sums(base, inputs["input_ids"], inputs.get("attention_mask"), answer_mask)
            return {"logprob_sums": sums, "answer_tokens": counts}
        return CausalLMOutputWithPast(loss=causal_lm_loss(base, {**inputs, "labels": labels}, num_items_in_batch))

    forward._tuneforge_chunked = True  # type: ignore[attr-defined]
    base.forward = forward


def answer_logprob_sums(model: Any, input_ids: Any, attention_mask: Any, answer_mask: Any) -> tuple[Any, Any]:
    """Per row: (sum of log p(token) over the answer tokens, how many there are), without full logits.

    The preference losses that score an answer by its mean log-probability (ORPO, SimPO) use this,
    through the attached forward (`model(..., answer_mask=...)`); `model` is the causal LM itself.
    Each row is one chunked call, so the gradients flow exactly as for the training loss."""
    import torch

    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]
    keep = answer_mask[:, 1:].bool()
    targets = input_ids[:, 1:]
    weight = model.get_output_embeddings().weight
    one = torch.ones((), device=hidden.device)
    sums = torch.stack([-linear_cross_entropy(hidden[i][keep[i]], weight, targets[i][keep[i]], one)
                        for i in range(hidden.shape[0])])
    return sums, keep.sum(dim=1)
