"""Where `tuneforge train` runs: in this process, or as several (torchrun, Ray) started from here."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.config.switches import switched_on
from tuneforge.launch import torchrun
from tuneforge.launch.torchrun import Outcome
from tuneforge.log import note


def launch_elsewhere(cfg: RunConfig, argv: list[str], train_fn: Callable[..., Any], *args: Any) -> Outcome | None:
    """None: train in this process (alone, or as a rank a launcher started). Otherwise the outcome of the run
    started from here: torchrun on `argv` (`train CONFIG ...`), or Ray Train calling `train_fn(*args)` in each
    worker (USE_RAY=1)."""
    env = os.environ
    gpus = torchrun.visible_gpus()
    if not gpus:  # DeepSpeed (imported by the Trainer when installed) probes for accelerators and warns on every rank
        env.setdefault("DS_ACCELERATOR", "cpu")
    if torchrun.under_launcher(env):
        return None
    if switched_on(env, "USE_RAY"):
        from tuneforge.launch.ray import run_with_ray

        return run_with_ray(cfg.dist, train_fn, *args)
    plan = torchrun.plan(env, gpus)
    if plan is not None:
        note(f"torchrun: {plan.nproc_per_node} processes on each of {plan.nnodes} node(s) (this one: node "
             f"{plan.node_rank}), meeting at {plan.master_addr}:{plan.master_port}")
        return torchrun.run_torchrun([*plan.args(), "-m", "tuneforge", *argv])
    if cfg.dist.deepspeed is not None or cfg.dist.fsdp:  # fsdp: the Trainer refuses it outside a process group
        torchrun.single_process_env(env)
    return None


@contextmanager
def one_rank_at_a_time(run: str | None) -> Iterator[None]:
    """Ranks of a multi-process run take turns (a file lock in tuneforge's cache, one per output folder `run`):
    the first prepares the data and writes the cache, the others find it there instead of encoding the same
    records at once."""
    import hashlib

    from tuneforge.log import world_size

    if world_size() <= 1:
        yield
        return
    from filelock import FileLock

    from tuneforge.data.dataset import cache_root

    root = cache_root() / "locks"
    root.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(str(run).encode("utf-8")).hexdigest()[:16]
    with FileLock(str(root / f"data-{name}.lock")):
        yield


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Every rank arrives, rank 0 runs the block, then the others do (alone: just the block). For the output
    folder: no rank may still be reading it when rank 0 clears it, and none may go on before it is written."""
    import torch.distributed as dist

    together = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if together:
        dist.barrier()
    if together and dist.get_rank() != 0:
        dist.barrier()
        yield
        return
    yield
    if together:
        dist.barrier()


def join_deepspeed(cfg: RunConfig) -> None:
    """Before the weights load: ZeRO-3 partitions them inside from_pretrained (deepspeed.zero.Init), counting the
    ranks through DeepSpeed's own comm layer. On a CPU (use_cpu) the Trainer's process group is accelerate's and
    DeepSpeed has not joined it yet, so it would count one rank and refuse the batch sizes; join it first (a no-op
    where the Trainer already did, on GPUs)."""
    import torch.distributed as dist

    if cfg.dist.deepspeed is None or not (dist.is_available() and dist.is_initialized()):
        return
    import deepspeed

    deepspeed.init_distributed(dist_backend=dist.get_backend())


def engine_notes(cfg: RunConfig, device: str) -> list[str]:
    """What the multi-process settings will really do on this machine, said before anything loads."""
    from pathlib import Path

    from tuneforge.config.distributed import PRESETS

    ds = cfg.dist.deepspeed
    if isinstance(ds, str) and Path(ds).parent == PRESETS:
        return [f"deepspeed: {Path(ds).name} is tuneforge's own copy ({ds})"]
    if cfg.dist.fsdp and device == "cpu":
        # accelerate turns FSDP on only on accelerators: on a CPU the Trainer runs the same ranks as plain DDP
        return ["fsdp: FSDP shards the model on GPUs only; on this CPU the run is plain data parallel (every rank "
                "holds the whole model)"]
    return []
