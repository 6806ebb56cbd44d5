"""Parameter groups and AdamW settings shared by the extras' optimizers (train/optimizers.py, train/muon.py)."""

from __future__ import annotations

from typing import Any


def adam_kwargs(args: Any) -> dict[str, Any]:
    return dict(lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)


def decay_groups(named: list[tuple[str, Any]], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices, none on biases and norms (as the Trainer's default optimizer does)."""
    return [{"params": [p for n, p in named if p.ndim >= 2 and "bias" not in n], "weight_decay": weight_decay},
            {"params": [p for n, p in named if p.ndim < 2 or "bias" in n], "weight_decay": 0.0}]
