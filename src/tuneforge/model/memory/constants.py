"""Constants of the memory model (calibration points and the architectures it knows)."""

from __future__ import annotations

from dataclasses import dataclass, field

GIB = 2**30
MIB = 2**20

# CUDA context, cuBLAS workspaces and PyTorch's own kernels loaded on the card: what nvidia-smi
# shows for a process before it allocates a tensor (about 0.5-0.8 GiB on an H100 with CUDA 12).
CUDA_CONTEXT_BYTES = 768 * MIB
# The caching allocator reserves more than it hands out: block rounding plus fragmentation, which
# padding-free batches (a different length every step) make worse. A fraction of the memory that
# changes every step (activations, loss and working memory). To be calibrated on a GPU.
ALLOCATOR_SLACK = 0.10
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
    forward_bytes: int = 0  # alive at the end of the forward before the loss: what autograd keeps (+ autocast's cache)
    resident_grads_bytes: int = 0  # gradients kept across micro-batches (gradient accumulation)

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB


