"""The crash harness: start `tuneforge train` as a user would (a subprocess on the tiny model), signal or
kill it at a chosen moment, resume it, and compare with a run that was never interrupted.

Moments are aimed through the test hooks of src/tuneforge/train/testhooks.py: a step delay makes each
optimizer step (and eval batch) last long enough to land a kill inside it, a save delay holds a
checkpoint save open with part of its files written. bench/kill_resume.py drives the same functions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

# A run short enough for many kills: 12 steps, a checkpoint every 4, every step logged.
BASE = {
    "model_name_or_path": "tuneforge/tiny", "stage": "sft", "do_train": True, "dataset": "identity",
    "identity_name": "Forge", "identity_author": "Tuneforge Lab", "template": "qwen3_nothink", "cutoff_len": 256,
    "per_device_train_batch_size": 4, "lr_scheduler_type": "cosine", "finetuning_type": "lora",
    "learning_rate": 5e-3, "max_steps": 12, "logging_steps": 1, "save_strategy": "steps", "save_steps": 4,
    "seed": 7, "report_to": "none", "plot_loss": False, "overwrite_output_dir": True,
}


def write_config(folder: Path, **keys) -> Path:
    """train.yaml in `folder` (BASE + keys), output_dir `folder/out` unless given."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {**BASE, "output_dir": str(folder / "out"), **keys}
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def output_dir(config: Path) -> Path:
    return Path(yaml.safe_load(config.read_text(encoding="utf-8"))["output_dir"])


class Run:
    """One `tuneforge train` subprocess; stderr goes to a file next to the config."""

    def __init__(self, config: Path, *overrides: str, env: dict[str, str] | None = None):
        self.config, self.out = config, output_dir(config)
        index = len(list(config.parent.glob("stderr-*.txt")))
        self.stderr_path = config.parent / f"stderr-{index}.txt"
        self._stderr = self.stderr_path.open("w", encoding="utf-8")
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "tuneforge", "train", str(config), *overrides],
                                     stdout=subprocess.DEVNULL, stderr=self._stderr, env=full_env)

    @property
    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_until(self, condition: Callable[[], bool], timeout: float = 300, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise AssertionError(f"the run ended (exit {code}) before {what}\n{self.stderr[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.stderr[-3000:]}")
            time.sleep(0.02)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 300) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the run did not end within {timeout}s\n{self.stderr[-3000:]}") from None
        finally:
            self._stderr.close()
        return code

    def kill9(self) -> int:
        self.signal(signal.SIGKILL)
        return self.finish()


def log_records(out: Path) -> list[dict]:
    """trainer_log.jsonl's whole lines (a line being written may be cut short)."""
    path = out / "trainer_log.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def steps_logged(out: Path) -> int:
    return max((r.get("current_steps", 0) for r in log_records(out)), default=0)


def losses(out: Path, key: str = "loss") -> dict[int, float]:
    """step -> the logged `key` (loss, or eval_loss at the evaluation steps)."""
    return {r["current_steps"]: r[key] for r in log_records(out) if key in r}


def saving(out: Path) -> bool:
    """A checkpoint save is under way (its temporary folder exists)."""
    return out.is_dir() and any(p.name.startswith(".tmp-checkpoint-") for p in out.iterdir())


def adapter(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


def differences(reference: Path, resumed: Path) -> tuple[float, float]:
    """(largest difference of a logged loss or eval loss at the same step, largest final adapter weight
    difference); a missing or extra logged step counts as an infinite difference."""
    loss = 0.0
    for key in ("loss", "eval_loss"):
        ref, got = losses(reference, key), losses(resumed, key)
        if set(ref) != set(got):
            return float("inf"), float("inf")
        loss = max([loss] + [abs(ref[s] - got[s]) for s in ref])
    a, b = adapter(reference), adapter(resumed)
    if set(a) != set(b):
        return loss, float("inf")
    weight = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    return loss, weight


def resume(config: Path, env: dict[str, str] | None = None) -> Run:
    return Run(config, "resume_from_checkpoint=true", env=env)


_REFERENCE: list[Path] = []


@pytest.fixture
def reference(tmp_path_factory, tiny_path) -> Path:
    """The uninterrupted run every crash test compares with: trained once per session (the test modules
    import this fixture, so the cache is this module's), in-process, through the function the CLI calls.
    A fixture here, not in a conftest.py: `conftest` is a module name the e2e helpers import."""
    if not _REFERENCE:
        from tuneforge.cli.train import run_train

        config = write_config(tmp_path_factory.mktemp("reference"))
        run_train(config, [])
        _REFERENCE.append(config.parent / "out")
    return _REFERENCE[0]
