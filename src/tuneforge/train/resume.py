"""Where a resumed run starts: the newest complete checkpoint, said out loud; incomplete ones named and
left alone; a run that already reached its last step recognised before anything loads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import TrainConfig
from tuneforge.log import note
from tuneforge.train.checkpoints import (MANIFEST, STATE, checkpoint_dirs, incomplete_reason, replace_files,
                                         staging_dirs, step_of)

# what a checkpoint holds beyond the model files the final save writes (optimizer, RNG, ...)
RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state", "ppo_state", MANIFEST, STATE)


def clear_staging(output_dir: str | Path) -> None:
    """Remove the temporary folders of saves that were cut short (ours by construction: a save that
    completes renames its folder away), naming each."""
    if os.environ.get("RANK", "0") != "0":
        return  # one process clears; the others would race it
    for folder in staging_dirs(output_dir):
        shutil.rmtree(folder, ignore_errors=True)
        note(f"removed {folder}: a save that was cut short (the checkpoints before it are whole)")


def resume_checkpoint(output_dir: str | Path) -> Path:
    """resume_from_checkpoint: true -> the newest complete checkpoint-N of output_dir."""
    out = Path(output_dir)
    found = checkpoint_dirs(out)
    if not found:
        raise ConfigError(f"resume_from_checkpoint is true but {out} has no checkpoint-N folder")
    broken = {path: why for path in found if (why := incomplete_reason(path)) is not None}
    complete = [path for path in found if path not in broken]
    newest = complete[-1] if complete else None
    for path, why in broken.items():
        if newest is None or step_of(path) > step_of(newest):
            note(f"{path} is incomplete ({why}); skipped and left as it is: delete it when you no longer need it")
    if newest is None:
        listed = "; ".join(f"{p.name}: {why}" for p, why in broken.items())
        raise ConfigError(f"resume_from_checkpoint is true but no checkpoint in {out} is complete ({listed})")
    note(f"resuming from {newest} (step {step_of(newest)})")
    return newest


def check_checkpoint(path: str | Path) -> Path:
    """resume_from_checkpoint: <folder> -> that folder, if it is a whole checkpoint."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"resume_from_checkpoint '{path}' is not a checkpoint folder (it does not exist)")
    why = incomplete_reason(path)
    if why is not None:
        raise ConfigError(f"resume_from_checkpoint '{path}' is an incomplete checkpoint ({why}); resume from an "
                          f"earlier one, or use resume_from_checkpoint: true to pick the newest complete one")
    note(f"resuming from {path}")
    return path


def _state(folder: Path) -> dict:
    try:
        data = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def finished(checkpoint: str | Path, train: TrainConfig) -> str | None:
    """When `checkpoint` is the last step of the run this config asks for: the line that says so (after
    writing the final files from it, if the run was stopped while writing them). None otherwise."""
    checkpoint = Path(checkpoint)
    state = _state(checkpoint)
    step, planned = int(state.get("global_step") or 0), int(state.get("max_steps") or 0)
    if train.max_steps > 0:
        target = train.max_steps
    elif train.num_train_epochs <= float(state.get("num_train_epochs") or 0):
        target = planned
    else:
        return None  # more epochs asked for than the run planned: there is more to train
    if target <= 0 or step < target:
        return None
    out = checkpoint.parent
    if int(_state(out).get("global_step") or -1) < step and os.environ.get("RANK", "0") == "0":
        _finish_from(checkpoint, out)
    return (f"{out} holds a finished run: {checkpoint.name} is its last step ({step} of {target}); nothing to train. "
            "Raise max_steps or num_train_epochs to train further, or drop resume_from_checkpoint and set "
            "overwrite_output_dir: true to start over")


def _finish_from(checkpoint: Path, out: Path) -> None:
    """The run reached its last step but was stopped before its final files were written: they are the
    model files of its last checkpoint, copied (then renamed into place) with its trainer_state.json."""
    staging = out / ".tmp-final"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for entry in checkpoint.iterdir():
            if entry.name.startswith(RESUME_ONLY):
                continue
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, staging / entry.name)
        replace_files(staging, out)
        shutil.copy2(checkpoint / STATE, staging.with_name(f".{STATE}.tmp"))
        os.replace(staging.with_name(f".{STATE}.tmp"), out / STATE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    note(f"the run was stopped before writing its final files; copied the model of {checkpoint} to {out}")
