"""`USE_RAY=1 tuneforge train cfg.yaml`: the same training run as `ray_num_workers` workers of Ray Train's
TorchTrainer (LLaMA-Factory's keys: ray_num_workers, ray_init_kwargs, ray_run_name, ray_storage_path,
resources_per_worker, placement_strategy).

Ray Train starts the workers, sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR in each and joins them in
one torch process group (gloo on CPUs, nccl on GPUs); each worker then runs `tuneforge train` as a rank of
an ordinary data-parallel run (the HF Trainer finds the group through accelerate). Nothing here trains.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError, TuneforgeError
from tuneforge.config.schema import DistConfig
from tuneforge.launch.torchrun import Outcome, visible_gpus


def worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the run's own train function, as one rank. Its notes go through tuneforge's own
    handler (rank 0 only), not on to the root logger Ray sets up in each worker."""
    from tuneforge.log import logger, to_stderr

    to_stderr()
    logger.propagate = False
    try:
        config["fn"](*config["args"])
    except TuneforgeError as exc:  # the user's mistake: Ray logs what a worker raises; not the whole stack then
        raise exc.with_traceback(None) from None


def run_with_ray(dist: DistConfig, train_fn: Callable[..., Any], *args: Any) -> Outcome:
    """Train `train_fn(*args)` on `ray_num_workers` Ray Train workers; the outcome names a failed worker's rank."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.train") is None:
        raise ConfigError("USE_RAY=1 needs Ray Train: pip install 'tuneforge[ray]'")
    import ray
    from ray.train import RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchTrainer

    resources = dist.resources_per_worker or ({"GPU": 1} if visible_gpus() else {"CPU": 1})
    scaling = ScalingConfig(num_workers=dist.ray_num_workers, use_gpu=bool(resources.get("GPU")),
                            resources_per_worker=resources, placement_strategy=dist.placement_strategy)
    run = RunConfig(name=dist.ray_run_name, storage_path=str(Path(dist.ray_storage_path).resolve()))
    ray.init(**{"logging_level": logging.WARNING, **(dist.ray_init_kwargs or {})})
    try:
        TorchTrainer(worker, train_loop_config={"fn": train_fn, "args": args}, scaling_config=scaling,
                     run_config=run).fit()
    except TrainingFailedError as exc:
        return worker_failure(exc)
    finally:
        ray.shutdown()
    return Outcome(0)


def worker_failure(exc: BaseException) -> Outcome:
    """The first failed worker's error as one line naming its rank (exit 2 for a user error, 75 stopped)."""
    failures: dict[int, BaseException] = getattr(exc, "worker_failures", None) or {0: exc.__cause__ or exc}
    rank = min(failures)
    error = failures[rank]
    cause = getattr(error, "cause", None) or error  # RayTaskError wraps what the worker raised
    if type(cause).__name__ == "TrainingStopped":
        return Outcome(75)
    text = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
    if isinstance(cause, TuneforgeError):
        return Outcome(2, f"rank {rank}: {text}")
    return Outcome(1, f"rank {rank}: {type(cause).__name__}: {text}")
