"""Multi-process runs of `tuneforge train` on the CPU (gloo), compared with one process at the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import write_yaml

# 4 optimizer steps of LoRA on identity; one process x batch 4 is the reference for two ranks x batch 2
BASE = {
    "model_name_or_path": "tuneforge/tiny", "stage": "sft", "do_train": True, "dataset": "identity",
    "identity_name": "Forge", "identity_author": "Tuneforge Lab", "template": "qwen3_nothink", "cutoff_len": 128,
    "finetuning_type": "lora", "per_device_train_batch_size": 2, "max_steps": 4, "logging_steps": 1,
    "learning_rate": 1e-3, "lr_scheduler_type": "linear", "save_strategy": "no", "report_to": "none",
    "overwrite_output_dir": True,
}
TIMES: dict[str, float] = {}  # test name -> wall seconds of its multi-process run(s), printed with -s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(tmp: Path, name: str = "train.yaml", **keys) -> tuple[Path, Path]:
    out = tmp / keys.pop("out", "out")
    return write_yaml(tmp / name, **{**BASE, **keys, "output_dir": str(out)}), out


def env(**extra: str) -> dict[str, str]:
    # one thread per rank: two ranks share the machine's cores (torchrun sets the same for the ranks it starts)
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", **extra}


def start(args: list[str], **extra: str) -> subprocess.Popen:
    return subprocess.Popen(args, env=env(**extra), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def tuneforge(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuneforge", *args]


def torchrun(nproc: int, *args: str) -> list[str]:
    """A plain `torchrun ... -m tuneforge ...`, as a user types it."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
            str(free_port()), "-m", "tuneforge", *args]


def run(args: list[str], timeout: int = 600, **extra: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.time()
    result = subprocess.run(args, env=env(**extra), text=True, capture_output=True, timeout=timeout)
    return result, time.time() - started


def steps(out: Path) -> list[dict]:
    lines = (out / "trainer_log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in steps(out) if "loss" in r]


def check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"


def side_by_side(name: str, ours: list[float], reference: list[float], seconds: float) -> None:
    TIMES[name] = seconds
    pairs = ", ".join(f"{a:.6f}/{b:.6f}" for a, b in zip(ours, reference))
    print(f"\n{name}: {seconds:.1f}s; loss (multi-process/one process): {pairs}")


def one_process(tmp: Path, **keys) -> list[dict]:
    """The reference: one process at batch 4 (the global batch of two ranks at 2), trained in this process."""
    from tuneforge.cli.train import run_train

    tmp.mkdir(parents=True, exist_ok=True)
    path, out = config(tmp, **{"per_device_train_batch_size": 4, **keys})
    run_train(path, [])
    return steps(out)


def need(module: str) -> None:
    """Skip where an optional package is missing (a plain install); in CI, where the dev extra installs it, fail."""
    import importlib.util

    import pytest

    if importlib.util.find_spec(module.split(".")[0]) is not None and importlib.util.find_spec(module) is not None:
        return
    message = f"{module} is not installed (pip install -e '.[dev]')"
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"{message}; CI must install it", pytrace=False)
    pytest.skip(message)
