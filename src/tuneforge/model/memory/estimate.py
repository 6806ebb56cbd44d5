"""Peak memory of a training step, and the gradient-checkpointing decision."""

from __future__ import annotations

import math
from typing import Any

from tuneforge.config.schema import MethodConfig
from tuneforge.model.fused_loss import chunk_rows
from tuneforge.model.memory.activations import Activations, TapeTensor, walk_activations
from tuneforge.model.memory.constants import (
    ALLOCATOR_SLACK,
    ATTENTION,
    BACKWARD_FACTOR,
    CUDA_CONTEXT_BYTES,
    GIB,
    KNOWN_TYPES,
    MemoryEstimate,
)
from tuneforge.model.memory.optimizers import extras_terms
from tuneforge.model.memory.quantized import Quantization, quantized_linears
from tuneforge.model.memory.shape import Plan, Shape, plan_method
from tuneforge.model.memory.sharding import Sharding, shard

# --------------------------------------------------------------------------------------------
# Loss, backward, total


def _loss(shape: Shape, plan: Plan, tokens: int, final: TapeTensor, fused: bool, frozen_bytes: int, liger: bool
          ) -> tuple[int, int]:
    """(working memory of the loss at its largest, what of it stays until the backward starts)."""
    w = 4 if plan.head_trains(shape) else frozen_bytes
    head_grad = shape.vocab * shape.hidden * 4 if plan.head_trains(shape) else 0
    if liger:
        # Liger's fused linear+cross-entropy (not measured here: Triton needs a GPU): the input's
        # gradient is computed in the forward and kept; chunks of about tokens x hidden logits
        inc = -(-shape.vocab // shape.hidden)
        rows = min(tokens, 1 << max(0, (-(-tokens // inc) - 1).bit_length()))
        kept = tokens * shape.hidden * final.nbytes + head_grad
        return kept + tokens * shape.hidden * final.nbytes + rows * shape.vocab * 6, kept
    if fused:
        # model/fused_loss.py: the gradient w.r.t. the kept rows is computed in the forward and kept
        # (rows x hidden, in the head's dtype), plus the head's weight gradient if it trains; while
        # it runs: the decoder output, its labelled rows (a gather copy, plus a cast copy if the
        # head's dtype differs) and one chunk of logits (half matmul output, fp32 copy, and
        # logsumexp's fp32 temporary: at most 8 bytes per logit).
        rows = min(chunk_rows(shape.vocab), tokens)
        kept = tokens * shape.hidden * w + 16 * tokens + head_grad
        gather = tokens * shape.hidden * final.nbytes * (2 if final.nbytes != w else 1)
        working = tokens * shape.hidden * final.nbytes + gather + rows * shape.vocab * 8
        return kept + working, kept
    # Full logits through the model's own loss: log_softmax keeps its fp32 output [tokens, vocab],
    # and its backward holds two more fp32 [tokens, vocab] gradients at once (the forward's half
    # logits plus fp32 copies are smaller).
    return 12 * tokens * shape.vocab, 4 * tokens * shape.vocab


def estimate_memory(model_config: Any, method: MethodConfig, *, tokens: int, dtype_bytes: int,
                    checkpointing: bool, fused_loss: bool, attention: str = "varlen", autocast: bool = True,
                    liger: bool = False, device: str = "cuda", optimizer_state_bytes: int = 8,
                    accumulation: int = 1, quantization: Quantization | None = None,
                    sharding: Sharding | None = None) -> MemoryEstimate:
    """Predicted peak memory of one training step.

    tokens: tokens of one micro-batch (padding-free; worst case per_device_train_batch_size x
    cutoff_len). dtype_bytes: 2 for bf16/fp16 mixed precision, 4 for fp32. attention: "varlen" or
    "sdpa" (flash-style, nothing T x T kept), "sdpa_masked" (SDPA with a block-diagonal mask),
    "eager". autocast: Trainer's torch.autocast is on around the forward (bf16/fp16 runs).
    liger: Liger's RMSNorm, SwiGLU and fused linear+cross-entropy replace transformers' own.
    optimizer_state_bytes: per trainable parameter (AdamW: 8; 8-bit AdamW: 2).
    accumulation: gradient_accumulation_steps; above 1 every trainable parameter's fp32 gradient
    stays alive through the next micro-batches' forward and backward (zero_grad runs after the
    optimizer step only). quantization: the base's linear layers load quantized (QLoRA,
    model/memory/quantized.py). sharding: one GPU's share of DDP / ZeRO ranks (model/memory/sharding.py)."""
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, not {attention!r}")
    if tokens <= 0:
        raise ValueError("tokens must be positive")
    shape = Shape.of(model_config)
    plan = plan_method(shape, method)
    notes = _notes(shape, plan, liger)
    half = dtype_bytes
    # model/load.py: lora and freeze load the base in the half dtype; full keeps fp32 master weights
    frozen_bytes = 4 if plan.kind == "full" else half
    weights = (plan.params - plan.trainable) * frozen_bytes + plan.trainable * 4
    dequantized = 0
    if quantization is not None:
        quantized, stored, dequantized = quantized_linears(shape, quantization, half)
        weights += stored - quantized * frozen_bytes
        notes.append(f"base linear layers in {quantization.describe()}: {quantization.bytes_per_weight():.3f} bytes "
                     "per weight; one layer's weight dequantized at a time counts as working memory")
    # GaLore, APOLLO, BAdam, Adam-mini, Muon keep less (model/memory/optimizers.py)
    optimizer, grads, optimizer_note = extras_terms(shape, plan, method, optimizer_state_bytes, plan.trainable * 4)
    if optimizer_note:
        notes.append(optimizer_note)
    fused_loss = fused_loss and not liger
    acts = walk_activations(shape, plan, tokens, half, autocast, frozen_bytes, attention, liger)
    loss, loss_kept = _loss(shape, plan, tokens, acts.final, fused_loss, frozen_bytes, liger)
    mode = "autocast" if autocast and half < 4 else "plain"
    # the dtype of the MLP's activations: half under autocast, else the base weights' dtype
    act_bytes = half if mode == "autocast" else (4 if plan.kind == "full" else half)
    backward_temp = math.ceil(BACKWARD_FACTOR[mode] * tokens * shape.intermediate * act_bytes)
    forward_saved, activation, working = _activation_terms(acts, checkpointing, loss_kept, backward_temp)
    working += dequantized
    grads_live = _grads_live(shape, plan, grads, fused_loss or liger)
    resident = grads if accumulation > 1 else 0  # the earlier micro-batches' summed gradients
    dynamic = max(forward_saved + loss + resident, activation + working + grads_live + resident, grads)
    overhead = 0
    if device == "cuda":
        overhead = CUDA_CONTEXT_BYTES + math.ceil(ALLOCATOR_SLACK * (dynamic - grads_live))
    peak = weights + optimizer + dynamic + overhead
    return shard(MemoryEstimate(params=plan.params, trainable_params=plan.trainable, weights_bytes=weights,
                                grads_bytes=grads, optimizer_bytes=optimizer, activation_bytes=activation,
                                loss_bytes=loss, working_bytes=working, overhead_bytes=overhead, peak_bytes=peak,
                                checkpointing=checkpointing, tokens=tokens, notes=notes, forward_bytes=forward_saved,
                                resident_grads_bytes=resident), sharding, sum(shape.layer_params().values()) * frozen_bytes)


def _notes(shape: Shape, plan: Plan, liger: bool) -> list[str]:
    """What the estimate models only approximately for this model and method."""
    notes = []
    if shape.model_type not in KNOWN_TYPES:
        notes.append(f"activations follow a Llama/Qwen2 decoder layer; {shape.model_type or 'this model'} may differ")
    if plan.dora:
        notes.append("DoRA's activations are approximate")
    if plan.extra_trained:
        notes.append("additional_target modules are counted as parameters, not in the activations")
    if liger:
        notes.append("Liger's kernels are modelled from their source, not measured")
    return notes


def _activation_terms(acts: Activations, checkpointing: bool, loss_kept: int, backward_temp: int
                      ) -> tuple[int, int, int]:
    """(alive at the end of the forward, activations at the backward's start, working memory on top of them)."""
    if checkpointing:
        # non-reentrant checkpointing per decoder layer: each layer keeps only its input; the
        # backward recomputes one layer at a time (its forward temporaries and saved tensors
        # exist once more), then runs that layer's backward. Autocast's cached half copies of the
        # fp32 weights are not saved then, but the cache holds them all until the forward's
        # autocast context exits (the loss runs inside it); the backward starts without them.
        kept = sum(acts.inputs) + acts.other
        activation = kept + max(acts.per_layer)
        busiest = max(max(p, s + backward_temp) for p, s in zip(acts.layer_peaks, acts.per_layer))
        return kept + acts.weight_copies, activation, loss_kept + busiest - max(acts.per_layer)
    # the forward's high-water mark (inside the last layer) or the first layer's backward
    return acts.saved, acts.saved, max(acts.forward_peak - acts.saved, loss_kept + backward_temp)


def _grads_live(shape: Shape, plan: Plan, grads: int, head_in_loss: bool) -> int:
    """Gradients alive at the start of the backward: all of them for adapters (small, and they
    appear layer by layer); for trained base weights, one layer's (the previous layers' have freed
    more activations than their gradients take) plus the output head's, unless the loss computes
    the head's gradient itself (`head_in_loss`: chunked or Liger loss)."""
    if plan.kind == "lora":
        return grads
    layer_params = shape.layer_params()
    live = 4 * max(sum(layer_params[n] for n in plan.layer_trained(i)) for i in range(shape.layers))
    if plan.head_trains(shape) and not head_in_loss:
        live += shape.vocab * shape.hidden * 4
    return live


def saved_bytes(model_config: Any, method: MethodConfig, *, tokens: int, dtype_bytes: int, autocast: bool = True,
                attention: str = "sdpa") -> int:
    """What autograd saves for one forward without checkpointing, model only (no loss): the number
    `saved_tensors_hooks` measures, for validating the activation model."""
    shape = Shape.of(model_config)
    plan = plan_method(shape, method)
    frozen_bytes = 4 if plan.kind == "full" else dtype_bytes
    acts = walk_activations(shape, plan, tokens, dtype_bytes, autocast, frozen_bytes, attention)
    return acts.saved


def choose_checkpointing(model_config: Any, method: MethodConfig, *, tokens: int, dtype_bytes: int,
                         card_bytes: int, fused_loss: bool, attention: str = "varlen", **kwargs: Any
                         ) -> tuple[bool, str]:
    """(checkpointing on?, one line saying why, with the predicted peak and `card_bytes`: the memory
    the run may use, model/memory/settings.py's Budget)."""
    off = estimate_memory(model_config, method, tokens=tokens, dtype_bytes=dtype_bytes, checkpointing=False,
                          fused_loss=fused_loss, attention=attention, **kwargs)
    card = f"{card_bytes / GIB:.1f} GiB usable"
    if off.peak_bytes <= card_bytes:
        return False, f"off (predicted {off.peak_gib:.1f} GiB <= {card})"
    on = estimate_memory(model_config, method, tokens=tokens, dtype_bytes=dtype_bytes, checkpointing=True,
                         fused_loss=fused_loss, attention=attention, **kwargs)
    if on.peak_bytes <= card_bytes:
        return True, (f"on (predicted {off.peak_gib:.1f} GiB without it > {card}; "
                      f"{on.peak_gib:.1f} GiB with it)")
    return True, (f"on, and still too big: predicted {on.peak_gib:.1f} GiB with it > {card} "
                  "(lower per_device_train_batch_size or cutoff_len)")

