"""The output folder: its default, refuse to clobber, continue the run its checkpoints hold, write the resolved
config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuneforge.atomic import write_atomic
from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.log import note
from tuneforge.train.checkpoints import checkpoint_dirs, complete_checkpoints, staging_dirs
from tuneforge.train.resume import check_checkpoint, clear_staging, resume_checkpoint

# What the web UI writes into output_dir before it starts `tuneforge train` there (the run's YAML, its
# log, its process file): a folder holding only these is still a fresh one.
WEBUI_FILES = frozenset({"webui_config.yaml", "webui_train.log", "webui_run.json"})


def check_output_dir(cfg: RunConfig) -> str | None:
    """Validate output_dir before any work; return the checkpoint to resume from (or None).

    As in LLaMA-Factory, an output_dir that holds a whole checkpoint continues that run from its newest one
    unless overwrite_output_dir says to start over; a folder holding other files is refused."""
    t = cfg.train
    out = Path(t.output_dir or ".")
    resume = t.resume_from_checkpoint
    if resume:
        clear_staging(out)
        return str(resume_checkpoint(out) if resume is True else check_checkpoint(resume))
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir '{out}' is a file")
    if not out.is_dir() or t.overwrite_output_dir:
        return None
    if complete_checkpoints(out):
        note(f"output_dir '{out}' holds checkpoints of an earlier run: continuing it (overwrite_output_dir: true "
             "starts over)")
        clear_staging(out)
        return str(resume_checkpoint(out))
    if any(p.name not in WEBUI_FILES for p in out.iterdir()):
        broken = [p.name for p in checkpoint_dirs(out)]
        found = f" (its checkpoints are incomplete: {', '.join(broken)})" if broken else ""
        raise ConfigError(f"output_dir '{out}' is not empty{found}; set overwrite_output_dir: true to write over it, "
                          "or choose another folder")
    return None


def default_output_dir(model: str | None, method: str | None, root: str | Path = "saves", prefix: str = "train") -> str:
    """saves/<model>/<method>/train_<time>: LLaMA-Factory's (LlamaBoard's) layout, a fresh folder per run."""
    import time

    name = (model or "model").rstrip("/").split("/")[-1] or "model"
    return str(Path(root) / name / (method or "lora") / f"{prefix}_{time.strftime('%Y-%m-%d-%H-%M-%S')}")


def write_run_config(cfg: RunConfig, output_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    path = Path(output_dir) / "training_args.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cfg.flat()
    data.update(extra or {})
    write_atomic(path, yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def clear_previous_run(output_dir: str | Path) -> None:
    """overwrite_output_dir: drop the old run's checkpoints and log so they cannot mix with the new one."""
    import shutil

    for path in checkpoint_dirs(output_dir) + staging_dirs(output_dir):
        shutil.rmtree(path)
    out = Path(output_dir)
    stale = ["trainer_log.jsonl", "adapter_model.safetensors", "adapter_config.json", "value_head.safetensors",
             "model.safetensors", "model.safetensors.index.json", "all_results.json", "train_results.json",
             "eval_results.json", "trainer_state.json", "generated_predictions.jsonl", "predict_results.json"]
    for path in [out / name for name in stale] + list(out.glob("model-*-of-*.safetensors")) + list(out.glob("training_*.png")):
        if path.is_file():
            path.unlink()
