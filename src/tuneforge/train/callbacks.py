"""Trainer callbacks: LLaMA-Factory's trainer_log.jsonl, and one readable line per log step."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import ProgressCallback, TrainerCallback

LOG_NAME = "trainer_log.jsonl"


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _timing(started: float, first_step: int, state: Any) -> tuple[float, float]:
    """(elapsed, estimated remaining) seconds, from the steps done since this process started training."""
    elapsed = time.time() - started
    done = max(state.global_step - first_step, 1)
    return elapsed, elapsed / done * max(state.max_steps - state.global_step, 0)


class JsonlLogCallback(TrainerCallback):
    """Writes one JSON line per log event with LLaMA-Factory's keys (current_steps, total_steps,
    loss, eval_loss, lr, epoch, percentage, elapsed_time, remaining_time), so its users'
    dashboards and scripts keep working. On resume, lines past the resumed step are dropped."""

    def __init__(self, output_dir: str):
        self.path = Path(output_dir) / LOG_NAME
        self.start = time.time()
        self.start_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self.start, self.start_step = time.time(), state.global_step
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if state.global_step > 0 and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip() and json.loads(line).get("current_steps", 0) <= state.global_step:
                    kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or not ({"loss", "eval_loss"} & set(logs)) or "train_loss" in logs:
            return  # the end-of-training summary goes to all_results.json instead
        elapsed, remaining = _timing(self.start, self.start_step, state)
        record = {
            "current_steps": state.global_step, "total_steps": state.max_steps,
            "loss": logs.get("loss"), "eval_loss": logs.get("eval_loss"), "lr": logs.get("learning_rate"),
            "epoch": round(state.epoch or 0.0, 4), "grad_norm": logs.get("grad_norm"),
            "percentage": round(state.global_step / max(state.max_steps, 1) * 100, 2),
            "elapsed_time": _clock(elapsed), "remaining_time": _clock(remaining),
        }
        if "num_input_tokens_seen" in logs:
            record["num_input_tokens_seen"] = logs["num_input_tokens_seen"]
        # stage metrics (rewards/accuracies, rewards/margins, logps, kl, ...) ride along
        skip = {"loss", "eval_loss", "learning_rate", "epoch", "grad_norm", "num_input_tokens_seen",
                "train_runtime", "train_tokens_per_second"}
        record.update({k: v for k, v in logs.items() if k not in skip and isinstance(v, (int, float))})
        record = {k: v for k, v in record.items() if v is not None}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


class ConciseProgress(ProgressCallback):
    """Trainer's progress bar (with ETA), but log events print as one short line."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        self.started, self.first_step = time.time(), state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or self.training_bar is None:
            return
        if "train_loss" in logs:
            return  # the end-of-training summary is printed by the command
        parts = [f"step {state.global_step}/{state.max_steps}"]
        if "loss" in logs:
            parts.append(f"loss {logs['loss']:.4f}")
        if "eval_loss" in logs:
            parts.append(f"eval_loss {logs['eval_loss']:.4f}")
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        elapsed, left = _timing(self.started, self.first_step, state)
        parts.append(f"epoch {state.epoch or 0:.2f} | {_clock(elapsed)} elapsed, ~{_clock(left)} left")
        self.training_bar.write(" | ".join(parts))
