"""What a run's files say while it trains: progress, the log's tail, the curves (no gradio here).

Progress comes from the trainer's progress bar in the log (step, total, elapsed, ETA, speed: it
moves every step) and falls back to trainer_log.jsonl, which `train/callbacks.py` writes every
logging step and which also gives the curves: loss (raw and smoothed with `train/plot.smooth`),
eval loss, learning rate and gradient norm.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.train.plot import smooth

# train/callbacks.py's LOG_NAME (LLaMA-Factory's file name); importing that module would load
# transformers, seconds the page should not wait for (tests/webui checks the two agree)
LOG_NAME = "trainer_log.jsonl"

# tqdm: " 12/200 [00:03<00:41,  4.51it/s]"
BAR = re.compile(r"(\d+)/(\d+) \[([\d:]+)<([\d:?]+),\s*([\d.?]+\s*(?:it/s|s/it))")
CURVES = {"loss": ("loss", "eval_loss"), "lr": ("lr",), "grad_norm": ("grad_norm",)}


@dataclass
class Progress:
    step: int = 0
    total: int = 0
    elapsed: str = ""
    remaining: str = ""
    speed: str = ""

    @property
    def percent(self) -> float:
        return 100.0 * self.step / self.total if self.total else 0.0


def records(run_dir: str | Path) -> list[dict[str, Any]]:
    """trainer_log.jsonl's lines (a line being written is skipped)."""
    path = Path(run_dir) / LOG_NAME
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def tail(path: str | Path, size: int = 16000) -> str:
    """The end of a log file, as a terminal would show it (a progress bar's \\r updates collapse)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(handle.tell() - size, 0))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.rstrip("\r").split("\r")[-1] for line in text.split("\n")]
    return "\n".join(lines)


def progress(run_dir: str | Path, log_text: str) -> Progress:
    """The newest progress-bar reading in the log, else the last trainer_log.jsonl line."""
    found = list(BAR.finditer(log_text[-4000:]))
    if found:
        step, total, elapsed, remaining, speed = found[-1].groups()
        return Progress(int(step), int(total), elapsed, remaining, speed.replace(" ", ""))
    rows = records(run_dir)
    if not rows:
        return Progress()
    last = rows[-1]
    step, elapsed = int(last.get("current_steps", 0)), str(last.get("elapsed_time", ""))
    return Progress(step, int(last.get("total_steps", 0)), elapsed, str(last.get("remaining_time", "")),
                    _speed(step, _seconds(elapsed)))


def _seconds(clock: str) -> float:
    """train/callbacks.py's "1:02:03" / "2:03" clock in seconds (0 when unreadable)."""
    try:
        parts = [int(part) for part in clock.split(":")]
    except ValueError:
        return 0.0
    return float(sum(part * 60 ** power for power, part in enumerate(reversed(parts))))


def _speed(steps: int, seconds: float) -> str:
    """The bar's speed when the log holds no bar (a fast run's step lines push it out of the tail): steps
    over whole seconds, so blank in the first second (after a resume, high: the clock restarted)."""
    if seconds <= 0 or steps <= 0:
        return ""
    rate = steps / seconds
    return f"{rate:.2f}it/s" if rate >= 1 else f"{1 / rate:.2f}s/it"


def curve_rows(rows: list[dict[str, Any]], chart: str) -> list[tuple[int, float, str]]:
    """(step, value, series) points of one chart; loss gets a smoothed series beside the raw one."""
    points: list[tuple[int, float, str]] = []
    for key in CURVES[chart]:
        series = [(int(r["current_steps"]), float(r[key])) for r in rows if r.get(key) is not None]
        points += [(step, value, key) for step, value in series]
        if key == "loss" and len(series) > 1:
            points += [(step, value, "loss (smoothed)")
                       for (step, _), value in zip(series, smooth([v for _, v in series]))]
    return points


def final_loss(rows: list[dict[str, Any]]) -> float | None:
    losses = [r["loss"] for r in rows if r.get("loss") is not None]
    return losses[-1] if losses else None


def duration(rows: list[dict[str, Any]]) -> str:
    return str(rows[-1].get("elapsed_time", "")) if rows else ""
