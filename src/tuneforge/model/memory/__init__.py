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

from tuneforge.model.memory.constants import GIB, MIB, MemoryEstimate
from tuneforge.model.memory.estimate import (
           choose_checkpointing,
           estimate_memory,
           saved_bytes,
)
from tuneforge.model.memory.shape import Plan, Shape, count_parameters, plan_method

__all__ = ["GIB", "MIB", "MemoryEstimate", "Plan", "Shape", "choose_checkpointing", "count_parameters",
           "estimate_memory", "plan_method", "saved_bytes"]
