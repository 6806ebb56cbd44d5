"""Predict a training run's peak GPU memory from the model's config alone (no weights loaded).

`estimate_memory` adds up, in bytes:

- weights: frozen weights in the half dtype for lora/freeze (model/load.py loads them so), fp32 for
  full fine-tuning (fp32 master weights); trainable weights are fp32 in every method (peft upcasts
  its adapters, `apply_freeze` upcasts the trained layers);
- grads (fp32, one per trainable parameter) and AdamW's two fp32 moments (8 bytes per trainable
  parameter; Trainer's default `adamw_torch_fused` keeps no other state);
- activations: the tensors autograd keeps for the backward of one micro-batch of `tokens` tokens
  (padding-free: a micro-batch is one row of the samples laid end to end). They are counted
  tensor by tensor by walking a Llama/Qwen2 decoder layer the way PyTorch runs it (`_Tape`):
  which op saves which input, in which dtype, and which tensors are shared. This was checked
  against `torch.autograd.graph.saved_tensors_hooks` on real models (tests/model/test_memory.py);
- loss working memory: the chunked loss of model/fused_loss.py, or full fp32 logits without it;
- working memory: the temporaries of one decoder layer at its busiest beyond what it saves: in
  the forward (a linear's output before its adapter's is added, fp32 copies for the adapters,
  ...), followed by the walk like the saved tensors, or in the backward (the gradients alive at
  once, a measured factor; with checkpointing, on top of the recomputed layer);
- overhead on a GPU: the CUDA context and the caching allocator's slack (constants below).

peak = weights + optimizer + overhead
       + max(end of forward: saved activations + loss,  busiest layer: activations + working + grads)

Everything here is pure arithmetic on the config; `estimate_memory` takes a transformers
PretrainedConfig (or anything with the same attribute names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import MethodConfig

GIB = 2**30
MIB = 2**20

# CUDA context, cuBLAS workspaces and PyTorch's own kernels loaded on the card: what nvidia-smi
# shows for a process before it allocates a tensor (about 0.5-0.8 GiB on an H100 with CUDA 12).
CUDA_CONTEXT_BYTES = 768 * MIB
# The caching allocator reserves more than it hands out: block rounding plus fragmentation, which
# padding-free batches (a different length every step) make worse. A fraction of the memory that
# changes every step (activations, loss and working memory). To be calibrated on a GPU.
ALLOCATOR_SLACK = 0.10
# fused_loss.py's CHUNK_BYTES: fp32 logits of one chunk of rows.
LOSS_CHUNK_BYTES = 256 * MIB
# Gradients alive at once during the backward of one decoder layer, in units of
# tokens x intermediate_size x activation bytes (the MLP's gradients dominate: the gradient of
# the down projection's input, then those of the gate and up outputs). Measured on CPU with
# torch.profiler's allocator events at the Qwen2.5-1.5B width (the checkpointed case of
# tests/model/test_memory.py depends on it): 1.85 in fp32 and in half precision without autocast,
# 2.7 under autocast, where each adapter's input gradient also passes through an fp32 copy (peft
# casts the input to the adapter's fp32).
BACKWARD_FACTOR = {"plain": 1.9, "autocast": 2.7}

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ATTENTION = ("varlen", "sdpa", "sdpa_masked", "eager")
# Decoders whose layer is exactly the one `_layer` walks (others are close: a note says so).
KNOWN_TYPES = {"qwen2", "qwen3", "llama", "mistral"}
MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size")


@dataclass
class MemoryEstimate:
    """Bytes of each part of a training step's GPU memory at its peak."""

    params: int
    trainable_params: int
    weights_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    activation_bytes: int  # autograd-saved tensors of one micro-batch at its largest (tokens), with the chosen checkpointing
    loss_bytes: int  # logits/loss working memory (small with the chunked loss)
    working_bytes: int  # temporaries of one decoder layer at its busiest (forward or backward), beyond what it saves
    overhead_bytes: int  # CUDA context + allocator slack (0 on CPU)
    peak_bytes: int
    checkpointing: bool
    tokens: int
    notes: list[str] = field(default_factory=list)  # where the model is an approximation

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB


# --------------------------------------------------------------------------------------------
# Shape and trainable parameters


@dataclass(frozen=True)
class Shape:
    """The numbers of a Llama-style decoder that memory depends on."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    qk_norm: bool  # Qwen3: an RMSNorm on every query and key head

    @classmethod
    def of(cls, config: Any) -> Shape:
        model_type = str(getattr(config, "model_type", "") or "")
        text = getattr(config, "text_config", None)
        if text is not None and getattr(config, "hidden_size", None) is None:
            config = text  # multimodal configs keep the decoder's numbers in text_config
        if any(getattr(config, key, None) for key in MOE_KEYS):
            raise ConfigError(f"tuneforge estimate does not model mixture-of-experts models yet ({model_type})")
        missing = [k for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                               "vocab_size") if not isinstance(getattr(config, k, None), int)]
        if missing:
            raise ConfigError(f"tuneforge estimate needs a Llama-style decoder config; model_type "
                              f"'{model_type}' has no {', '.join(missing)}")
        heads = config.num_attention_heads
        attention_bias = bool(getattr(config, "attention_bias", False))
        qwen2 = model_type == "qwen2"  # Qwen2 always has q/k/v biases and none on o_proj
        return cls(
            model_type=model_type, hidden=config.hidden_size, intermediate=config.intermediate_size,
            layers=config.num_hidden_layers, heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            vocab=config.vocab_size, tied=bool(getattr(config, "tie_word_embeddings", False)),
            qkv_bias=qwen2 or attention_bias, o_bias=attention_bias and not qwen2,
            mlp_bias=bool(getattr(config, "mlp_bias", False)), qk_norm=model_type == "qwen3")

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear of a decoder layer."""
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def layer_params(self) -> dict[str, int]:
        """Parameter name inside a decoder layer -> element count (named as transformers names them)."""
        out: dict[str, int] = {}
        bias = {"q_proj": self.qkv_bias, "k_proj": self.qkv_bias, "v_proj": self.qkv_bias, "o_proj": self.o_bias,
                "gate_proj": self.mlp_bias, "up_proj": self.mlp_bias, "down_proj": self.mlp_bias}
        for name, (n_in, n_out) in self.linear_dims().items():
            block = "self_attn" if name in LINEARS[:4] else "mlp"
            out[f"{block}.{name}.weight"] = n_in * n_out
            if bias[name]:
                out[f"{block}.{name}.bias"] = n_out
        if self.qk_norm:
            out["self_attn.q_norm.weight"] = self.head_dim
            out["self_attn.k_norm.weight"] = self.head_dim
        out["input_layernorm.weight"] = self.hidden
        out["post_attention_layernorm.weight"] = self.hidden
        return out

    def named_params(self) -> dict[str, int]:
        """Every parameter of the causal LM once (tied embeddings are one parameter, as in
        `model.named_parameters()`)."""
        out = {"model.embed_tokens.weight": self.vocab * self.hidden}
        layer = self.layer_params()
        for index in range(self.layers):
            out.update({f"model.layers.{index}.{name}": n for name, n in layer.items()})
        out["model.norm.weight"] = self.hidden
        if not self.tied:
            out["lm_head.weight"] = self.vocab * self.hidden
        return out


@dataclass(frozen=True)
class Plan:
    """What a fine-tuning method trains."""

    kind: str  # lora | freeze | full
    params: int  # all parameters, adapters included (as peft counts them)
    trainable: int
    lora_rank: int = 0
    lora_targets: frozenset[str] = frozenset()
    lora_dropout: float = 0.0
    dora: bool = False
    trained: frozenset[str] = frozenset()  # full names of the base model's parameters that train
    extra_trained: int = 0  # peft modules_to_save copies (additional_target)

    def layer_trained(self, index: int) -> frozenset[str]:
        prefix = f"model.layers.{index}."
        return frozenset(n[len(prefix):] for n in self.trained if n.startswith(prefix))

    @property
    def embed(self) -> bool:
        return "model.embed_tokens.weight" in self.trained


def _freeze_trained(shape: Shape, method: MethodConfig) -> frozenset[str]:
    """The same selection as adapters.apply_freeze, on parameter names."""
    n_layers, count = shape.layers, method.freeze_trainable_layers
    if abs(count) > n_layers:
        raise ConfigError(f"freeze_trainable_layers {count} exceeds the model's {n_layers} layers")
    layer_ids = range(n_layers - count, n_layers) if count > 0 else range(-count)
    prefixes = [f".layers.{i}." for i in layer_ids]
    modules, extra = method.freeze_trainable_modules, method.freeze_extra_modules or []
    trained, matched = set(), set()
    for name in shape.named_params():
        in_layer = any(p in name for p in prefixes)
        if in_layer and modules != ["all"]:
            hit = [m for m in modules if f".{m}." in name]
            matched.update(hit)
            in_layer = bool(hit)
        if in_layer or any(f".{m}." in f".{name}" or name.startswith(f"{m}.") for m in extra):
            trained.add(name)
    if modules != ["all"] and set(modules) - matched:
        raise ConfigError(f"freeze_trainable_modules {', '.join(sorted(set(modules) - matched))} matches "
                          "nothing in the trainable layers (e.g. use mlp, self_attn or all)")
    if not trained:
        raise ConfigError("freeze settings leave no trainable parameter")
    return frozenset(trained)


def plan_method(shape: Shape, method: MethodConfig) -> Plan:
    """Which parameters train, counted exactly as peft / adapters.py would count them."""
    named = shape.named_params()
    total = sum(named.values())
    if method.finetuning_type == "full":
        return Plan("full", total, total, trained=frozenset(named))
    if method.finetuning_type == "freeze":
        trained = _freeze_trained(shape, method)
        return Plan("freeze", total, sum(named[n] for n in trained), trained=trained)
    available = list(LINEARS)
    targets = available if method.lora_target == ["all"] else method.lora_target
    missing = [t for t in targets if t not in available]
    if missing:
        raise ConfigError(f"lora_target {', '.join(missing)} matches no linear layer of this model "
                          f"(it has: {', '.join(sorted(available))}; or use 'all')")
    dims = shape.linear_dims()
    r = method.lora_rank
    per_layer = sum(r * (dims[t][0] + dims[t][1]) + (dims[t][1] if method.use_dora else 0) for t in set(targets))
    adapters = per_layer * shape.layers
    # additional_target (peft modules_to_save): a trainable copy of each named module
    extra = 0
    for module in method.additional_target or []:
        extra += sum(n for name, n in named.items() if f".{module}." in f".{name}")
    return Plan("lora", total + adapters + extra, adapters + extra, lora_rank=r, lora_targets=frozenset(targets),
                lora_dropout=method.lora_dropout, dora=method.use_dora, extra_trained=extra)


def count_parameters(model_config: Any, method: MethodConfig) -> tuple[int, int]:
    """(trainable, total), as adapters.count_parameters reports them after apply_method."""
    plan = plan_method(Shape.of(model_config), method)
    return plan.trainable, plan.params


# --------------------------------------------------------------------------------------------
# Activations: the tensors autograd saves, walked op by op


@dataclass(frozen=True)
class _T:
    """A tensor of `width` elements per token, `nbytes` bytes per element."""

    width: int
    nbytes: int
    grad: bool  # requires grad
    key: int  # identity: two consumers saving the same tensor store it once


class _Tape:
    """Walks the forward with the dtypes PyTorch really uses and sums what autograd saves.

    It also follows the temporaries: at each step of the walk `touch(live)` says how many bytes
    per token are alive without being saved (the residual stream, a linear's output before the
    adapter's is added, ...), so the forward's high-water mark is known too.

    `half`: the compute dtype's size (2 for bf16/fp16, 4 for fp32). `autocast`: Trainer's mixed
    precision (torch.autocast) is on; without it, half-precision runs use the weights' dtypes."""

    def __init__(self, tokens: int, half: int, autocast: bool, frozen_bytes: int, plan: Plan, liger: bool,
                 rope_bytes: int):
        self.tokens, self.half, self.autocast = tokens, half, autocast and half < 4
        self.liger, self.frozen_bytes, self.plan = liger, frozen_bytes, plan
        self.rope_bytes = rope_bytes  # cos + sin per token, saved once by the first layer that needs them
        self.saved: dict[int, int] = {}  # key -> bytes
        self.running = 0  # bytes saved so far (plus autocast's cached weight copies)
        self.peak = 0  # the forward's high-water mark: running + temporaries
        self.layer_start = 0
        self.layer_peak = 0  # the same, counted from the start of the current layer
        self._next = 0

    def new(self, width: int, nbytes: int, grad: bool) -> _T:
        self._next += 1
        return _T(width, nbytes, grad, self._next)

    def save(self, t: _T) -> None:
        if t.key not in self.saved:
            self.saved[t.key] = t.width * t.nbytes * self.tokens
            self.running += self.saved[t.key]

    def save_bytes(self, nbytes: int) -> None:
        self._next += 1
        self.saved[self._next] = nbytes
        self.running += nbytes

    def add_fixed(self, nbytes: int) -> None:
        """Bytes that do not scale with tokens (autocast's cached half copies of trained weights)."""
        self.running += nbytes

    def keep(self, *tensors: _T) -> int:
        """Bytes per token of those tensors that are alive but not saved."""
        return sum(t.width * t.nbytes for t in tensors if t.key not in self.saved)

    def touch(self, live: int) -> None:
        extra = live * self.tokens
        self.peak = max(self.peak, self.running + extra)
        self.layer_peak = max(self.layer_peak, self.running - self.layer_start + extra)

    def start_layer(self) -> None:
        self.layer_start, self.layer_peak = self.running, 0

    # ---- ops

    def rmsnorm(self, x: _T, weight_trains: bool, live: int, width: int | None = None, groups: int = 1) -> _T:
        """transformers' RMSNorm: x.to(fp32); x * rsqrt(mean(x^2) + eps); weight * that.to(x.dtype).
        pow and mul keep the fp32 copy of x, rsqrt its output (one float per row); the final
        multiply keeps the normalised input only when the weight trains (the weight itself is a
        parameter, not counted here)."""
        width = width or x.width
        w_bytes = 4 if weight_trains else self.frozen_bytes
        out = self.new(width, max(w_bytes, x.nbytes), x.grad or weight_trains)
        if self.liger:  # Liger's RMSNorm keeps its input as it is and one fp32 rstd per row
            if x.grad or weight_trains:
                self.save(x)
                self.save_bytes(groups * 4 * self.tokens)
            self.touch(live + out.width * out.nbytes)
            return self.new(width, x.nbytes, x.grad or weight_trains)
        x32 = x if x.nbytes == 4 else self.new(width, 4, x.grad)
        if x.grad:
            self.save(x32)
            self.save_bytes(groups * 4 * self.tokens)  # rsqrt: one fp32 per row (per head for q/k norms)
        normed = self.new(width, x.nbytes, x.grad)  # x32 * rsqrt, then .to(x.dtype)
        if weight_trains:
            self.save(normed)
        # at the final multiply: the fp32 product, its cast (if x is half) and the output
        self.touch(live + self.keep(x32) + 4 * width + (self.keep(normed) if x.nbytes != 4 else 0)
                   + out.width * out.nbytes)
        return out

    def linear(self, x: _T, name: str, n_out: int, trained: frozenset[str], block: str, live: int) -> _T:
        """A linear layer, with its LoRA adapter if it has one (peft's Linear.forward).
        `live`: bytes per token alive around it, its input included when that is not saved."""
        w_trains = f"{block}.{name}.weight" in trained
        b_trains = f"{block}.{name}.bias" in trained
        w_bytes = 4 if w_trains else self.frozen_bytes
        if self.autocast:
            # autocast casts every input that is not yet half to a fresh half copy, per call
            xb = x if x.nbytes == self.half else self.new(x.width, self.half, x.grad)
            out_bytes = self.half
            if w_trains and w_bytes != self.half and x.grad:
                # autocast's cached half copy of the weight, kept for the input's gradient
                self.add_fixed(x.width * n_out * self.half)
        else:
            xb, out_bytes = x, max(x.nbytes, w_bytes)
        if w_trains:
            self.save(xb)  # the weight's gradient needs the input
        base = n_out * out_bytes  # the base layer's output, alive until the adapter's is added
        self.touch(live + (self.keep(xb) if xb is not x else 0) + base)
        out_grad = x.grad or w_trains or b_trains
        if name not in self.plan.lora_targets:
            return self.new(n_out, out_bytes, out_grad)
        r = self.plan.lora_rank
        # peft casts the input to the adapter's dtype (fp32) before lora_A
        xl = x if x.nbytes == 4 else self.new(x.width, 4, x.grad)
        if self.plan.lora_dropout > 0:
            self.save_bytes(x.width * self.tokens)  # dropout's mask, one byte per element
            xl = self.new(x.width, 4, x.grad)
        # under autocast, lora_A's matmul recasts that fp32 copy to half: one more copy, the saved one
        xa = self.new(x.width, self.half, x.grad) if self.autocast else xl
        self.save(xa)  # lora_A's gradient needs its input
        lora_bytes = self.half if self.autocast else 4
        self.save(self.new(r, lora_bytes, True))  # lora_B's gradient needs lora_A's output
        if self.autocast:
            # autocast's cached half copies of lora_B (kept for lora_A's output gradient) and of
            # lora_A (kept only when the input needs a gradient)
            self.add_fixed(r * (n_out + (x.width if x.grad else 0)) * self.half)
        self.touch(live + base + (self.keep(xl) if xl is not x else 0))  # lora_A runs on the fp32 copy
        if self.plan.dora:
            # DoRA (approximate): the base output and the adapter output are kept for the magnitude
            # scaling, and the merged weight for its norm
            self.save(self.new(n_out, out_bytes, True))
            self.save(self.new(n_out, lora_bytes, True))
            self.add_fixed(x.width * n_out * 4)
        # result + lora_B(...) * scaling: lora_B's output and its scaled copy, then the sum (in the
        # wider dtype), then .to(result dtype); adds and scalar multiplies save nothing
        total = n_out * max(out_bytes, lora_bytes)
        self.touch(live + base + 2 * n_out * lora_bytes)
        self.touch(live + base + n_out * lora_bytes + total)
        if lora_bytes > out_bytes:
            self.touch(live + total + base)
        return self.new(n_out, out_bytes, True)

    def attention(self, q: _T, k: _T, v: _T, shape: Shape, kind: str, live: int) -> tuple[_T, int]:
        """RoPE then the attention kernel -> (output, bytes per token still alive beside it until
        the attention block returns). RoPE's multiplies by cos/sin keep only cos and sin (shared
        by all layers, saved once). Flash-style kernels (varlen, SDPA without a mask) keep q, k,
        v, the output and one fp32 logsumexp per head and token; with a mask (padding-free rows
        under plain SDPA) transformers repeats k and v to every query head first; eager attention
        keeps the T x T probabilities (fp32 softmax output and its half copy)."""
        grad = q.grad or k.grad or v.grad
        self.touch(live + self.keep(q, k, v) + 3 * q.width * q.nbytes)  # RoPE's temporaries
        if not grad:
            return self.new(q.width, q.nbytes, False), 0
        if self.rope_bytes:
            self.save_bytes(self.rope_bytes * self.tokens)
            self.rope_bytes = 0
        q_rot, k_rot = self.new(q.width, q.nbytes, True), self.new(k.width, k.nbytes, True)
        att = self.half if self.autocast else q.nbytes
        if self.autocast and q.nbytes != att:  # the kernel runs on half copies
            q_rot, k_rot = self.new(q.width, att, True), self.new(k.width, att, True)
            v = self.new(v.width, att, v.grad)
        out = self.new(q.width, att, True)
        after = 0
        if kind in ("varlen", "sdpa"):
            for t in (q_rot, k_rot, v, out):
                self.save(t)
            self.save_bytes(shape.heads * 4 * self.tokens)  # logsumexp
            if kind == "varlen":  # the kernel keeps contiguous [T, heads, dim] copies; RoPE's outputs live on
                after = (q.width + k.width + v.width) * att
        elif kind == "sdpa_masked":
            self.save(q_rot)
            self.save(self.new(shape.q_dim, att, True))  # repeat_kv(k)
            self.save(self.new(shape.q_dim, att, True))  # repeat_kv(v)
            self.save(out)
            self.save_bytes(shape.heads * 4 * self.tokens)
            after = (k.width + v.width) * att
        else:  # eager: q @ k^T, softmax in fp32, .to(dtype), @ v, transpose().contiguous()
            self.save(q_rot)
            self.save(self.new(shape.q_dim, att, True))  # repeated k
            self.save(self.new(shape.q_dim, att, True))  # repeated v
            self.save_bytes(shape.heads * self.tokens * self.tokens * 4)  # softmax output (fp32)
            if att != 4:
                self.save_bytes(shape.heads * self.tokens * self.tokens * att)  # its half copy for @ v
            after = (k.width + v.width) * att
        self.touch(live + after + out.width * out.nbytes)
        return out, after


def _layer(tape: _Tape, x: _T, shape: Shape, index: int, attention: str) -> _T:
    """One decoder layer (transformers' LlamaDecoderLayer / Qwen2DecoderLayer)."""
    trained = tape.plan.layer_trained(index)
    dims = shape.linear_dims()
    tape.start_layer()
    h = tape.rmsnorm(x, "input_layernorm.weight" in trained, tape.keep(x))
    live = tape.keep(x, h)  # the residual and the normalised input live through the attention block
    q = tape.linear(h, "q_proj", dims["q_proj"][1], trained, "self_attn", live)
    k = tape.linear(h, "k_proj", dims["k_proj"][1], trained, "self_attn", live + tape.keep(q))
    v = tape.linear(h, "v_proj", dims["v_proj"][1], trained, "self_attn", live + tape.keep(q, k))
    if shape.qk_norm:
        q = tape.rmsnorm(q, "self_attn.q_norm.weight" in trained, live + tape.keep(k, v), groups=shape.heads)
        k = tape.rmsnorm(k, "self_attn.k_norm.weight" in trained, live + tape.keep(q, v), groups=shape.kv_heads)
    out, after = tape.attention(q, k, v, shape, attention, live)
    o = tape.linear(out, "o_proj", shape.hidden, trained, "self_attn", live + after + tape.keep(out))
    x2 = tape.new(shape.hidden, max(x.nbytes, o.nbytes), x.grad or o.grad)  # residual add
    tape.touch(tape.keep(x, o) + x2.width * x2.nbytes)
    h = tape.rmsnorm(x2, "post_attention_layernorm.weight" in trained, tape.keep(x2))
    live = tape.keep(x2, h)
    gate = tape.linear(h, "gate_proj", shape.intermediate, trained, "mlp", live)
    act = tape.new(shape.intermediate, gate.nbytes, gate.grad)
    if not tape.liger:
        if gate.grad:
            tape.save(gate)  # silu's backward needs its input
        tape.touch(live + tape.keep(gate) + act.width * act.nbytes)
    up = tape.linear(h, "up_proj", shape.intermediate, trained, "mlp",
                     live + (tape.keep(gate) if tape.liger else tape.keep(act)))
    if tape.liger:
        if gate.grad or up.grad:  # Liger's SwiGLU keeps gate and up, recomputes silu in the backward
            tape.save(gate)
            tape.save(up)
        before = tape.keep(gate, up)
    else:
        if up.grad:
            tape.save(act)  # the product's backward: d/d(up) needs act ...
        if act.grad:
            tape.save(up)  # ... and d/d(act) needs up
        before = tape.keep(act, up)
    prod = tape.new(shape.intermediate, max(act.nbytes, up.nbytes), act.grad or up.grad)
    tape.touch(live + before + prod.width * prod.nbytes)
    down = tape.linear(prod, "down_proj", shape.hidden, trained, "mlp", live + tape.keep(prod))
    out = tape.new(shape.hidden, max(x2.nbytes, down.nbytes), x2.grad or down.grad)
    tape.touch(tape.keep(x2, down) + out.width * out.nbytes)
    return out


@dataclass
class _Activations:
    per_layer: list[int]  # saved bytes of each layer
    layer_peaks: list[int]  # each layer's forward high-water mark: its saved bytes so far + temporaries
    inputs: list[int]  # bytes of each layer's input (what checkpointing keeps)
    other: int  # outside the layers: embedding indices, cos/sin, final norm
    forward_peak: int  # the whole forward's high-water mark without checkpointing
    final: _T  # the final norm's output (what the loss reads)

    @property
    def saved(self) -> int:
        return sum(self.per_layer) + self.other


def _activations(shape: Shape, plan: Plan, tokens: int, half: int, autocast: bool, frozen_bytes: int,
                 attention: str, liger: bool = False) -> _Activations:
    embed_bytes = 4 if plan.embed else frozen_bytes
    # cos and sin, [tokens, head_dim] each, in the embedding output's dtype
    tape = _Tape(tokens, half, autocast, frozen_bytes, plan, liger, 2 * shape.head_dim * embed_bytes)
    x = tape.new(shape.hidden, embed_bytes, plan.embed)
    if plan.embed:
        tape.save_bytes(8 * tokens)  # the embedding's backward keeps the token ids (int64)
    if attention == "sdpa_masked":
        tape.save_bytes(tokens * tokens)  # the block-diagonal boolean mask, built once
    per_layer, peaks, inputs = [], [], []
    for index in range(shape.layers):
        inputs.append(x.width * x.nbytes * tokens)
        rope_before = tape.rope_bytes
        x = _layer(tape, x, shape, index, attention)
        rope = (rope_before - tape.rope_bytes) * tokens  # saved inside the layer, but shared by all
        per_layer.append(tape.running - tape.layer_start - rope)
        peaks.append(tape.layer_peak - rope)
    final = tape.rmsnorm(x, "model.norm.weight" in plan.trained, tape.keep(x))
    other = tape.running - sum(per_layer)
    return _Activations(per_layer, peaks, inputs, other, max(tape.peak, tape.running), final)


# --------------------------------------------------------------------------------------------
# Loss, backward, total


def _loss(shape: Shape, plan: Plan, tokens: int, final: _T, fused: bool, frozen_bytes: int, liger: bool
          ) -> tuple[int, int]:
    """(working memory of the loss at its largest, what of it stays until the backward starts)."""
    head_trains = "lm_head.weight" in plan.trained or shape.tied and plan.embed
    w = 4 if head_trains else frozen_bytes
    head_grad = shape.vocab * shape.hidden * 4 if head_trains else 0
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
        rows = max(64, LOSS_CHUNK_BYTES // (4 * shape.vocab))
        rows = min(1 << (rows.bit_length() - 1), tokens)
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
                    liger: bool = False, device: str = "cuda", optimizer_state_bytes: int = 8) -> MemoryEstimate:
    """Predicted peak memory of one training step.

    tokens: tokens of one micro-batch (padding-free; worst case per_device_train_batch_size x
    cutoff_len). dtype_bytes: 2 for bf16/fp16 mixed precision, 4 for fp32. attention: "varlen" or
    "sdpa" (flash-style, nothing T x T kept), "sdpa_masked" (SDPA with a block-diagonal mask),
    "eager". autocast: Trainer's torch.autocast is on around the forward (bf16/fp16 runs).
    liger: Liger's RMSNorm, SwiGLU and fused linear+cross-entropy replace transformers' own.
    optimizer_state_bytes: per trainable parameter (AdamW: 8; 8-bit AdamW: 2)."""
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, not {attention!r}")
    if tokens <= 0:
        raise ValueError("tokens must be positive")
    shape = Shape.of(model_config)
    plan = plan_method(shape, method)
    notes: list[str] = []
    if shape.model_type not in KNOWN_TYPES:
        notes.append(f"activations follow a Llama/Qwen2 decoder layer; {shape.model_type or 'this model'} may differ")
    if plan.dora:
        notes.append("DoRA's activations are approximate")
    if plan.extra_trained:
        notes.append("additional_target modules are counted as parameters, not in the activations")
    half = dtype_bytes
    # model/load.py: lora and freeze load the base in the half dtype; full keeps fp32 master weights
    frozen_bytes = 4 if plan.kind == "full" else half
    weights = (plan.params - plan.trainable) * frozen_bytes + plan.trainable * 4
    grads = plan.trainable * 4
    optimizer = plan.trainable * optimizer_state_bytes

    if liger:
        notes.append("Liger's kernels are modelled from their source, not measured")
        fused_loss = False
    acts = _activations(shape, plan, tokens, half, autocast, frozen_bytes, attention, liger)
    loss, loss_kept = _loss(shape, plan, tokens, acts.final, fused_loss, frozen_bytes, liger)
    mode = "autocast" if autocast and half < 4 else "plain"
    # the dtype of the MLP's activations: half under autocast, else the base weights' dtype
    act_bytes = half if mode == "autocast" else (4 if plan.kind == "full" else half)
    backward_temp = math.ceil(BACKWARD_FACTOR[mode] * tokens * shape.intermediate * act_bytes)
    if checkpointing:
        # non-reentrant checkpointing per decoder layer: each layer keeps only its input; the
        # backward recomputes one layer at a time (its forward temporaries and saved tensors
        # exist once more), then runs that layer's backward
        forward_saved = sum(acts.inputs) + acts.other
        activation = forward_saved + max(acts.per_layer)
        busiest = max(max(p, s + backward_temp) for p, s in zip(acts.layer_peaks, acts.per_layer))
        working = loss_kept + busiest - max(acts.per_layer)
    else:
        forward_saved = activation = acts.saved
        # the forward's high-water mark (inside the last layer) or the first layer's backward
        working = max(acts.forward_peak - acts.saved, loss_kept + backward_temp)
    # gradients alive at the start of the backward: all of them for adapters (small, and they
    # appear layer by layer); for trained base weights, one layer's (the previous layers' have
    # freed more activations than their gradients take) plus the output head's without the
    # chunked loss (with it, the head's gradient is part of the loss's memory already)
    grads_live = grads
    if plan.kind != "lora":
        layer_params = shape.layer_params()
        grads_live = 4 * max(sum(layer_params[n] for n in plan.layer_trained(i)) for i in range(shape.layers))
        head_trains = "lm_head.weight" in plan.trained or shape.tied and plan.embed
        if head_trains and not (fused_loss or liger):
            grads_live += shape.vocab * shape.hidden * 4
    dynamic = max(forward_saved + loss, activation + working + grads_live, grads)
    overhead = 0
    if device == "cuda":
        overhead = CUDA_CONTEXT_BYTES + math.ceil(ALLOCATOR_SLACK * (dynamic - grads_live))
    peak = weights + optimizer + dynamic + overhead
    return MemoryEstimate(params=plan.params, trainable_params=plan.trainable, weights_bytes=weights,
                          grads_bytes=grads, optimizer_bytes=optimizer, activation_bytes=activation,
                          loss_bytes=loss, working_bytes=working, overhead_bytes=overhead, peak_bytes=peak,
                          checkpointing=checkpointing, tokens=tokens, notes=notes)


def saved_bytes(model_config: Any, method: MethodConfig, *, tokens: int, dtype_bytes: int, autocast: bool = True,
                attention: str = "sdpa") -> int:
    """What autograd saves for one forward without checkpointing, model only (no loss): the number
    `saved_tensors_hooks` measures, for validating the activation model."""
    shape = Shape.of(model_config)
    plan = plan_method(shape, method)
    frozen_bytes = 4 if plan.kind == "full" else dtype_bytes
    acts = _activations(shape, plan, tokens, dtype_bytes, autocast, frozen_bytes, attention)
    return acts.saved


def choose_checkpointing(model_config: Any, method: MethodConfig, *, tokens: int, dtype_bytes: int,
                         card_bytes: int, fused_loss: bool, attention: str = "varlen", **kwargs: Any
                         ) -> tuple[bool, str]:
    """(checkpointing on?, one line saying why, with the predicted peak and the card's memory)."""
    off = estimate_memory(model_config, method, tokens=tokens, dtype_bytes=dtype_bytes, checkpointing=False,
                          fused_loss=fused_loss, attention=attention, **kwargs)
    card = f"{card_bytes / GIB:.0f} GiB card"
    if off.peak_bytes <= card_bytes:
        return False, f"off (predicted {off.peak_gib:.1f} GiB <= {card})"
    on = estimate_memory(model_config, method, tokens=tokens, dtype_bytes=dtype_bytes, checkpointing=True,
                         fused_loss=fused_loss, attention=attention, **kwargs)
    if on.peak_bytes <= card_bytes:
        return True, (f"on (predicted {off.peak_gib:.1f} GiB without it > {card}; "
                      f"{on.peak_gib:.1f} GiB with it)")
    return True, (f"on, and still too big: predicted {on.peak_gib:.1f} GiB with it > {card} "
                  "(lower per_device_train_batch_size or cutoff_len)")

