"""Trainer callbacks: LLaMA-Factory's trainer_log.jsonl, one readable line per log step, and stopping
on a signal (train/stop.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import ProgressCallback, TrainerCallback

from tuneforge.atomic import write_atomic
from tuneforge.log import note
from tuneforge.train import testhooks
from tuneforge.train.disk import save_errors
from tuneforge.train.stop import StopSignals

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
        kept = kept_lines(self.path, state.global_step) if state.global_step > 0 else []
        write_atomic(self.path, "".join(line + "\n" for line in kept))

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
        with save_errors(str(self.path), args.output_dir), self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def kept_lines(path: Path, step: int) -> list[str]:
    """The lines of an earlier trainer_log.jsonl up to `step` (a resumed run rewrites the later ones). A
    line cut short (the run was killed, or the disk filled, while writing it) is dropped with a note."""
    if not path.is_file():
        return []
    kept = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            where = "its last line" if number == len(lines) else f"line {number}"
            note(f"{path}: dropped {where}, which was cut short: {line[:60]}")
            continue
        if isinstance(record, dict) and record.get("current_steps", 0) <= step:
            kept.append(line)
    return kept


class ConciseProgress(ProgressCallback):
    """Trainer's progress bar (with ETA), but log events print as one short line."""

    def close(self) -> None:
        """End the bar's line when training ends early (an error, a signal), so the next line (the CLI's
        `error: ...`) starts on a line of its own."""
        for bar in (self.training_bar, self.prediction_bar):
            if bar is not None:
                bar.close()
        self.training_bar = self.prediction_bar = None

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


class StopCallback(TrainerCallback):
    """Turns a signal recorded by train/stop.py into "save this step, then stop": at the end of the step,
    after an evaluation, or right after a save (that checkpoint is then the one). With several processes
    they agree first (any one signalled: all stop at the same step), else the save would wait forever
    for a process still training."""

    def __init__(self, stops: StopSignals | None):
        self.stops = stops
        self.stopped = False

    def _requested(self, args: Any) -> bool:
        local = self.stops is not None and self.stops.received is not None
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            import torch

            flag = torch.tensor([int(local)], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every process calls the same hooks in the same order
            local = bool(flag.item())
        self.stopped |= local
        return local

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        testhooks.pause_in_step()

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        testhooks.pause_in_step()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._requested(args):
            control.should_save = control.should_training_stop = True

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._requested(args):
            control.should_save = control.should_training_stop = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._requested(args):
            control.should_training_stop = True

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.stopped:  # stopped mid-epoch: that step is saved already; no epoch-end save or eval of it
            control.should_save = control.should_evaluate = False
