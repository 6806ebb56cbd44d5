"""What several GPUs change in one GPU's memory: data parallel (DDP), DeepSpeed ZeRO 1-3 and its CPU offload.

Per GPU, as DeepSpeed documents its stages (N ranks):
- DDP (or ZeRO-0): every GPU holds the whole model, gradients and optimizer, plus DDP's gradient buckets
  (a flat copy of the trainable gradients);
- ZeRO-1: optimizer states / N;  ZeRO-2: also the gradients kept across micro-batches / N;
- ZeRO-3: also the weights / N, plus the weights of the layer being gathered (two layers: the one running
  and the one prefetched);
- offload_optimizer to the CPU: no optimizer states on the GPU; offload_param (ZeRO-3): only the gathered
  layers' weights on the GPU.
Activations, the loss and working memory are per micro-batch and do not change.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from tuneforge.model.memory.constants import GIB, MemoryEstimate


@dataclass(frozen=True)
class Sharding:
    world: int = 1
    zero: int | None = None  # None: no DeepSpeed
    offload_optimizer: bool = False
    offload_params: bool = False

    @classmethod
    def of(cls, deepspeed: dict[str, Any] | None, world: int) -> Sharding:
        """From a DeepSpeed config mapping (config/distributed.read_json_setting) and the number of ranks."""
        zero = (deepspeed or {}).get("zero_optimization", {}) if deepspeed is not None else None
        if zero is None:
            return cls(world)
        on_cpu = lambda key: str((zero.get(key) or {}).get("device", "none")) in ("cpu", "nvme")  # noqa: E731
        return cls(world, int(zero.get("stage", 0)), on_cpu("offload_optimizer"), on_cpu("offload_param"))

    def describe(self) -> str:
        engine = f"ZeRO-{self.zero}" if self.zero is not None else "data parallel"
        offload = [name for name, on in (("optimizer", self.offload_optimizer), ("parameters", self.offload_params))
                   if on]
        return f"{engine} over {self.world} GPU(s)" + (f", {' and '.join(offload)} offloaded to the CPU" if offload else "")


def world_from_env(gpus: int) -> int:
    """The ranks a run started here would have: WORLD_SIZE inside a launched run, else NNODES x NPROC_PER_NODE
    (launch/torchrun.py's defaults: one node, one process per visible GPU)."""
    def number(name: str, default: int) -> int:
        try:
            return max(int(os.environ.get(name, "") or default), 1)
        except ValueError:
            return default

    if "WORLD_SIZE" in os.environ:
        return number("WORLD_SIZE", 1)
    return number("NNODES", 1) * number("NPROC_PER_NODE", max(gpus, 1))


def shard(est: MemoryEstimate, sharding: Sharding | None, layer_bytes: int) -> MemoryEstimate:
    """`est` (one GPU, the whole run on it) as one of `sharding.world` ranks (None, or one process without
    DeepSpeed: `est` itself). `layer_bytes`: one decoder layer's weights as loaded, what ZeRO-3 gathers at a time."""
    if sharding is None or (sharding.world <= 1 and sharding.zero is None):
        return est
    n, zero = sharding.world, sharding.zero
    weights, optimizer, resident, extra = est.weights_bytes, est.optimizer_bytes, est.resident_grads_bytes, 0
    if zero is not None and zero >= 1:
        optimizer //= n
    if zero is not None and zero >= 2:
        resident //= n
    if zero == 3:
        weights = (0 if sharding.offload_params else weights // n) + 2 * layer_bytes
    if sharding.offload_optimizer:
        optimizer = 0
    if n > 1 and not zero:
        extra = est.grads_bytes  # DDP's gradient buckets
    peak = est.peak_bytes - (est.weights_bytes - weights) - (est.optimizer_bytes - optimizer) \
        - (est.resident_grads_bytes - resident) + extra
    note = f"{sharding.describe()}: per-GPU memory"
    if extra:
        note += f" (DDP's gradient buckets add {extra / GIB:.2f} GiB)"
    if sharding.offload_optimizer or sharding.offload_params:
        moved = (est.optimizer_bytes if sharding.offload_optimizer else 0) \
            + (est.weights_bytes if sharding.offload_params else 0)
        note += f"; about {moved / n / GIB:.2f} GiB per rank held in CPU memory instead"
    return dataclasses.replace(est, weights_bytes=weights, optimizer_bytes=optimizer, resident_grads_bytes=resident,
                               overhead_bytes=est.overhead_bytes + extra, peak_bytes=peak, notes=[*est.notes, note])
