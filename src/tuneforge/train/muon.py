"""Muon (`torch.optim.Muon`) for the 2-D weight matrices of the hidden layers, AdamW for the rest, as one
optimizer the Trainer can schedule, save and resume."""

from __future__ import annotations

from typing import Any

import torch

from tuneforge.train.param_groups import adam_kwargs, decay_groups


def muon(model: Any, args: Any) -> Any:
    """Muon for the 2-D weight matrices of the hidden layers; AdamW for embeddings, the head, biases and norms
    (Muon's orthogonalised update is defined for hidden matrices only)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    hidden, rest = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        matrix = param.ndim == 2 and "embed" not in name and id(param) not in head_ids
        (hidden if matrix else rest).append((name, param))
    # match_rms_adamw: Muon's update scaled to AdamW's size, so one learning_rate serves both
    matrices = torch.optim.Muon([p for _, p in hidden], lr=args.learning_rate, weight_decay=args.weight_decay,
                                adjust_lr_fn="match_rms_adamw") if hidden else None
    others = torch.optim.AdamW(decay_groups(rest, args.weight_decay), **adam_kwargs(args)) if rest else None
    return MuonWithAdamW(matrices, others)


class MuonWithAdamW(torch.optim.Optimizer):
    """Two optimizers stepped as one. Written here because torch has no optimizer that combines two:
    the param groups are the two optimizers' own dicts (the Trainer's scheduler sets both learning
    rates), the saved state holds both."""

    def __init__(self, *optimizers: Any) -> None:
        self.optimizers = [o for o in optimizers if o is not None]
        super().__init__([g for o in self.optimizers for g in o.param_groups], {})

    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for optimizer, state in zip(self.optimizers, state_dict["optimizers"]):
            optimizer.load_state_dict(state)
