"""Stage ppo's hand-written loop (stages/ppo.py) as one of several ranks (torchrun, Ray): data parallel by hand,
because no Trainer runs this loop to wrap the model in DDP.

Every rank holds the same policy, value head and optimizer. A PPO step's prompts are the global batch, split
between the ranks (each rolls out and scores its share); whatever decides the update is made global, so all
ranks take the same one and stay equal: the gradients are averaged before each optimizer step (then clipped),
the running score statistics, the whitening and the adaptive KL see every rank's rollouts, and the logged
figures are means over all ranks. Rank 0 writes the logs, checkpoints and the final model. With one process
every method below returns its input unchanged.
"""

from __future__ import annotations

from typing import Any

import torch


class Ranks:
    def __init__(self) -> None:
        import torch.distributed as dist

        self.on = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.world = dist.get_world_size() if self.on else 1
        self.rank = dist.get_rank() if self.on else 0

    def share(self, items: list[Any]) -> list[Any]:
        """This rank's part of the global batch `items` (world x per-rank size)."""
        size = len(items) // self.world
        return items[self.rank * size:(self.rank + 1) * size]

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's `x` (the same shape on each), concatenated in rank order."""
        if not self.on:
            return x
        import torch.distributed as dist

        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    def total(self, x: torch.Tensor) -> torch.Tensor:
        if not self.on:
            return x
        import torch.distributed as dist

        x = x.clone()
        dist.all_reduce(x)
        return x

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """The mean of every rank's gradients, in place (one flat all-reduce)."""
        if not self.on:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = self.total(torch.cat([g.reshape(-1) for g in grads])) / self.world
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g).to(g.dtype)
            offset += g.numel()

    def mean(self, values: dict[str, float], device: Any) -> dict[str, float]:
        """Each logged figure averaged over the ranks (each rank's comes from the same number of mini-batches)."""
        if not self.on:
            return values
        keys = sorted(values)
        summed = self.total(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device))
        return {k: float(v) / self.world for k, v in zip(keys, summed.tolist())}

    def any(self, flag: bool, device: Any) -> bool:
        """True on every rank when it is true on one (a signal one rank received stops all at the same step)."""
        return bool(self.total(torch.tensor([int(flag)], device=device)).item()) if self.on else flag

    def barrier(self) -> None:
        if self.on:
            import torch.distributed as dist

            dist.barrier()

    def whiten(self, tensors: list[torch.Tensor], masks: list[torch.Tensor], shift_mean: bool = True
               ) -> list[torch.Tensor]:
        """ppo.whiten over the answer tokens of every rank's batch: mean and variance from summed moments."""
        device = tensors[0].device
        moments = torch.stack([sum((m.sum() for m in masks), torch.zeros((), device=device)),
                               sum(((t * m).sum() for t, m in zip(tensors, masks)), torch.zeros((), device=device)),
                               sum(((t * t * m).sum() for t, m in zip(tensors, masks)), torch.zeros((), device=device))])
        n, s, ss = self.total(moments.double()).tolist()
        mean = s / max(n, 1)
        std = max(ss / max(n, 1) - mean * mean, 0.0) ** 0.5 + 1e-8
        return [((t - mean) / std + (0 if shift_mean else mean)) * m for t, m in zip(tensors, masks)]
