"""The tensors autograd saves for one micro-batch, walked op by op through a decoder layer."""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.model.memory.shape import Plan, Shape

# --------------------------------------------------------------------------------------------
# Activations: the tensors autograd saves, walked op by op


@dataclass(frozen=True)
class TapeTensor:
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
        self.cached = 0  # of which autocast's cached half copies of fp32 weights
        self.peak = 0  # the forward's high-water mark: running + temporaries
        self.layer_start = 0
        self.layer_peak = 0  # the same, counted from the start of the current layer
        self._next = 0

    def new(self, width: int, nbytes: int, grad: bool) -> TapeTensor:
        self._next += 1
        return TapeTensor(width, nbytes, grad, self._next)

    def save(self, t: TapeTensor) -> None:
        if t.key not in self.saved:
            self.saved[t.key] = t.width * t.nbytes * self.tokens
            self.running += self.saved[t.key]

    def save_bytes(self, nbytes: int) -> None:
        self._next += 1
        self.saved[self._next] = nbytes
        self.running += nbytes

    def add_fixed(self, nbytes: int, cached: bool = True) -> None:
        """Bytes that do not scale with tokens: autocast's cached half copies of trained weights
        (`cached`; they live until the forward's autocast context exits, saved or not) or other
        weight-sized tensors autograd keeps."""
        self.running += nbytes
        if cached:
            self.cached += nbytes

    def keep(self, *tensors: TapeTensor) -> int:
        """Bytes per token of those tensors that are alive but not saved."""
        return sum(t.width * t.nbytes for t in tensors if t.key not in self.saved)

    def touch(self, live: int) -> None:
        extra = live * self.tokens
        self.peak = max(self.peak, self.running + extra)
        self.layer_peak = max(self.layer_peak, self.running - self.layer_start + extra)

    def start_layer(self) -> None:
        self.layer_start, self.layer_peak = self.running, 0

    # ---- ops

    def rmsnorm(self, x: TapeTensor, weight_trains: bool, live: int, width: int | None = None, groups: int = 1) -> TapeTensor:
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

    def linear(self, x: TapeTensor, name: str, n_out: int, trained: frozenset[str], block: str, live: int) -> TapeTensor:
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
            self.add_fixed(x.width * n_out * 4, cached=False)
        # result + lora_B(...) * scaling: lora_B's output and its scaled copy, then the sum (in the
        # wider dtype), then .to(result dtype); adds and scalar multiplies save nothing
        total = n_out * max(out_bytes, lora_bytes)
        self.touch(live + base + 2 * n_out * lora_bytes)
        self.touch(live + base + n_out * lora_bytes + total)
        if lora_bytes > out_bytes:
            self.touch(live + total + base)
        return self.new(n_out, out_bytes, True)

    def attention(self, q: TapeTensor, k: TapeTensor, v: TapeTensor, shape: Shape, kind: str, live: int) -> tuple[TapeTensor, int]:
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


def _layer(tape: _Tape, x: TapeTensor, shape: Shape, index: int, attention: str) -> TapeTensor:
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
class Activations:
    per_layer: list[int]  # saved bytes of each layer
    layer_peaks: list[int]  # each layer's forward high-water mark: its saved bytes so far + temporaries
    inputs: list[int]  # bytes of each layer's input (what checkpointing keeps)
    other: int  # outside the layers: embedding indices, cos/sin, final norm
    forward_peak: int  # the whole forward's high-water mark without checkpointing
    final: TapeTensor  # the final norm's output (what the loss reads)
    weight_copies: int = 0  # autocast's cached half copies of fp32 weights (in per_layer too)

    @property
    def saved(self) -> int:
        return sum(self.per_layer) + self.other


def walk_activations(shape: Shape, plan: Plan, tokens: int, half: int, autocast: bool, frozen_bytes: int,
                 attention: str, liger: bool = False) -> Activations:
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
    return Activations(per_layer, peaks, inputs, other, max(tape.peak, tape.running), final, tape.cached)


