"""`tuneforge train` on every visible GPU, or across machines, through torchrun (torch.distributed.run).

LLaMA-Factory's variables decide it, read from the environment as its `llamafactory-cli train` reads them:
FORCE_TORCHRUN=1 (or more than one visible GPU: CUDA_VISIBLE_DEVICES counts) starts torchrun with
NPROC_PER_NODE processes (default: one per GPU) on NNODES machines (NODE_RANK this one's index) meeting at
MASTER_ADDR:MASTER_PORT. A process started by a launcher (torchrun, deepspeed, Ray: LOCAL_RANK and
WORLD_SIZE set) trains where it is, so a plain `torchrun ... -m tuneforge train cfg.yaml` works too.

torchrun runs inside this process (`torch.distributed.run.run`, what the `torchrun` script calls), so a
rank's failure comes back as an exception we turn into one line, not torchrun's report of a dozen.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from tuneforge.config.errors import ConfigError
from tuneforge.config.switches import switched_on

DEFAULT_PORT = 29500  # torchrun's own default; machines of a multi-node run must agree on it


def under_launcher(env: Mapping[str, str]) -> bool:
    """Started by torchrun, the deepspeed launcher or Ray Train: train here, as this rank."""
    return "LOCAL_RANK" in env and "WORLD_SIZE" in env


@dataclass(frozen=True)
class Plan:
    nnodes: int
    node_rank: int
    nproc_per_node: int
    master_addr: str
    master_port: int

    def args(self) -> list[str]:
        """torchrun's arguments for this plan."""
        return ["--nnodes", str(self.nnodes), "--node_rank", str(self.node_rank),
                "--nproc_per_node", str(self.nproc_per_node), "--master_addr", self.master_addr,
                "--master_port", str(self.master_port)]


def _number(env: Mapping[str, str], name: str, default: int, least: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a whole number, got {raw!r}") from None
    if value < least:
        raise ConfigError(f"environment variable {name} must be at least {least}, got {value}")
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plan(env: Mapping[str, str], devices: int) -> Plan | None:
    """The torchrun launch the environment asks for, or None to train in this process. `devices`: the visible
    GPUs (CUDA_VISIBLE_DEVICES already applied)."""
    if under_launcher(env):
        return None
    nnodes = _number(env, "NNODES", 1, 1)
    if not (switched_on(env, "FORCE_TORCHRUN") or devices > 1 or nnodes > 1):
        return None
    node_rank = _number(env, "NODE_RANK", 0, 0)
    if node_rank >= nnodes:
        raise ConfigError(f"environment variable NODE_RANK is {node_rank} but NNODES is {nnodes}: ranks count from 0")
    nproc = _number(env, "NPROC_PER_NODE", max(devices, 1), 1)
    port = _number(env, "MASTER_PORT", DEFAULT_PORT if nnodes > 1 else free_port(), 1)
    return Plan(nnodes, node_rank, nproc, env.get("MASTER_ADDR", "").strip() or "127.0.0.1", port)


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def single_process_env(env: MutableMapping[str, str]) -> None:
    """DeepSpeed in one process started without a launcher looks for MPI (mpi4py) to find its peers; give it
    the variables torchrun would have set for a world of one."""
    if under_launcher(env):
        return
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1")):
        env.setdefault(key, value)
    env.setdefault("MASTER_PORT", str(free_port()))


@dataclass(frozen=True)
class Outcome:
    code: int  # the process exit code for the command
    message: str | None = None  # the error line to print (None: the ranks printed theirs)


def run_torchrun(args: list[str]) -> Outcome:
    """Run torchrun with `args` (its options, then `-m tuneforge train ...`) in this process. The one launcher
    function: tests replace it to see the command without starting processes."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # torchrun's agent logs its rendezvous, an OMP_NUM_THREADS warning and each failure several times over
    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)
    # on SIGTERM/SIGINT the agent passes the signal on and kills the ranks after this many seconds (torch's own
    # default is 30): a stopped run's ranks save the step first, and a big model's checkpoint takes longer
    os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "300")
    try:
        run(parse_args(args))
    except ChildFailedError as exc:
        return failed(exc.failures)
    except SignalException as exc:  # SIGTERM/SIGINT: passed on to the ranks, which saved and said how to resume
        return Outcome(75 if exc.sigval in (2, 15) else 128 + int(exc.sigval))
    return Outcome(0)


def failed(failures: Mapping[int, object]) -> Outcome:
    """One outcome for the failed ranks: the exit code of the lowest rank that exited by itself (torchrun stops
    the others with SIGTERM), else of the lowest killed one; a line for a rank that died without saying why
    (killed by a signal, a crash whose traceback it printed). Exit 2 (a user error) and 75 (stopped) were
    printed by the rank itself."""
    import signal

    codes = {rank: int(getattr(failure, "exitcode", 1)) for rank, failure in failures.items()}
    rank = min((r for r, c in codes.items() if c > 0), default=min(codes))
    code = codes[rank]
    if code in (2, 75):
        return Outcome(code)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return Outcome(128 - code, f"rank {rank} was killed by {name}{hint}")
    return Outcome(code, f"rank {rank} failed with exit code {code} (its output is above)")
