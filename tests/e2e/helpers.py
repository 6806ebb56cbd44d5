"""Helpers for end-to-end runs on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

TINY_SFT = {
    "model_name_or_path": "tuneforge/tiny", "stage": "sft", "do_train": True, "dataset": "identity",
    "identity_name": "Forge", "identity_author": "Tuneforge Lab", "template": "qwen3_nothink", "cutoff_len": 256,
    "per_device_train_batch_size": 4, "lr_scheduler_type": "cosine", "logging_steps": 10, "save_strategy": "no",
    "report_to": "none", "overwrite_output_dir": True,
}


def train(tmp: Path, **keys) -> Path:
    """Train in-process through the same function the CLI calls; returns output_dir."""
    from conftest import write_yaml
    from tuneforge.cli.train import run_train

    tmp.mkdir(parents=True, exist_ok=True)
    out = Path(keys.pop("output_dir", tmp / "out"))
    cfg = write_yaml(tmp / "train.yaml", **{**TINY_SFT, **keys, "output_dir": str(out)})
    run_train(cfg, [])
    return out


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines() if line.strip()]


def final_loss(out: Path) -> float:
    return [r["loss"] for r in log_lines(out) if "loss" in r][-1]


def answers(model_dir: str, adapter: str | None, questions: list[str]) -> list[str]:
    from tuneforge.config.load import load
    from tuneforge.data.example import Message
    from tuneforge.infer.hf import HFEngine

    keys = {"model_name_or_path": model_dir, "template": "qwen3_nothink", "do_train": False, "do_sample": False,
            "max_new_tokens": 48}
    if adapter:
        keys["adapter_name_or_path"] = adapter
    cfg, _ = load(base=keys)
    engine = HFEngine(cfg.model, cfg.data, cfg.generate)
    return [engine.chat([Message("user", q)]) for q in questions]
