"""Loss curves (training_loss.png, training_eval_loss.png) from trainer_state's log history."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def smooth(values: list[float], weight: float | None = None) -> list[float]:
    """Exponential moving average; heavier smoothing for longer curves."""
    if not values:
        return []
    if weight is None:
        weight = 1.8 * (1 / (1 + math.exp(-0.05 * len(values))) - 0.5)
    out, last = [], values[0]
    for value in values:
        last = last * weight + (1 - weight) * value
        out.append(last)
    return out


def plot_losses(log_history: list[dict[str, Any]], output_dir: str | Path, keys: tuple[str, ...] = ("loss", "eval_loss")) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key in keys:
        points = [(e["step"], e[key]) for e in log_history if key in e and "step" in e]
        if not points:
            continue
        steps, values = zip(*points)
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
        ax.plot(steps, values, color="#1f77b4", alpha=0.4, label="original")
        if len(values) > 1:
            ax.plot(steps, smooth(list(values)), color="#1f77b4", label="smoothed")
        run = Path(output_dir).resolve().name
        # the default font has no CJK glyphs: name the run only when it can be drawn
        ax.set_title(f"{key} of {run}" if run.isascii() else key)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.legend()
        fig.tight_layout()
        name = key.replace("/", "_")  # rewards/accuracies -> training_rewards_accuracies.png
        path = Path(output_dir) / ("training_loss.png" if key == "loss" else f"training_{name}.png")
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
