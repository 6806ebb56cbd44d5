"""Optimizer states (and, for BAdam, gradients) of the method extras, counted from the decoder's shape, as
train/optimizers.py builds them (fp32 states):

- GaLore: per projected m x n weight, Adam's two moments of the rank-r gradient (r x max(m, n) each) and the
  projection matrix (r x min(m, n)); AdamW's 8 bytes per parameter for the rest.
- APOLLO: the two moments of the rank-r gradient; its random projection is regenerated from a seed, an svd
  projection is kept (r x min(m, n)).
- BAdam, layer mode: Adam states, an fp32 copy and gradients for one decoder layer at a time; ratio mode:
  Adam states for badam_update_ratio of every weight (gradients as usual).
- Adam-mini: the first moment per parameter, one second moment per block (negligible).
- Muon: one momentum buffer for the hidden matrices, AdamW for the rest."""

from __future__ import annotations

from tuneforge.config.schema import MethodConfig
from tuneforge.model.memory.constants import LINEARS
from tuneforge.model.memory.shape import Plan, Shape

ADAM = 8  # bytes of fp32 state per parameter: two moments


def _projected(shape: Shape, targets: list[str]) -> list[tuple[int, int]]:
    """(m, n) of every weight a low-rank optimizer projects (targets: all, module or block names)."""
    dims = shape.linear_dims()
    chosen = [name for name in LINEARS if targets == ["all"] or name in targets
              or ("self_attn" if name in LINEARS[:4] else "mlp") in targets]
    return [dims[name] for name in chosen] * shape.layers


def low_rank_bytes(shape: Shape, trainable: int, rank: int, targets: list[str], projector: bool) -> int:
    weights = _projected(shape, targets)
    projected = sum(m * n for m, n in weights)
    states = sum(2 * min(rank, m, n) * max(m, n) + (min(rank, m, n) * min(m, n) if projector else 0)
                 for m, n in weights)
    return (trainable - projected) * ADAM + 4 * states


def extras_terms(shape: Shape, plan: Plan, method: MethodConfig, state_bytes: int,
                 grads: int) -> tuple[int, int, str | None]:
    """(optimizer bytes, gradient bytes, a note) for the run's optimizer; the plain AdamW terms when no extra
    optimizer is set."""
    trainable = plan.trainable
    if method.use_galore:
        optimizer = low_rank_bytes(shape, trainable, method.galore_rank, method.galore_target, True)
        return optimizer, grads, f"GaLore rank {method.galore_rank}: projected optimizer states"
    if method.use_apollo:
        optimizer = low_rank_bytes(shape, trainable, method.apollo_rank, method.apollo_target,
                                   method.apollo_proj == "svd")
        return optimizer, grads, f"APOLLO rank {method.apollo_rank}: projected optimizer states"
    if method.use_badam and method.badam_mode == "layer":
        layer = sum(shape.layer_params().values())
        return layer * (ADAM + 4), layer * 4, "BAdam: Adam states, an fp32 copy and gradients for one layer at a time"
    if method.use_badam:
        share = method.badam_update_ratio
        return int(trainable * share * ADAM), grads, f"BAdam ratio {share}: Adam states for that share of each weight"
    if method.use_adam_mini:
        return trainable * 4, grads, "Adam-mini: one moment per parameter"
    if method.use_muon:
        matrices = sum(m * n for m, n in shape.linear_dims().values()) * shape.layers
        return matrices * 4 + (trainable - matrices) * ADAM, grads, "Muon: one momentum buffer for the hidden matrices"
    return trainable * state_bytes, grads, None
