"""The disk under output_dir: writable and roomy enough before any weights load, and a save that fails
mid-run reported in one line (what failed, which checkpoint is still intact)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError, TuneforgeError
from tuneforge.config.schema import RunConfig
from tuneforge.log import note
from tuneforge.train.checkpoints import complete_checkpoints

ALMOST_FULL = 64 * 2**20  # free bytes below which a failed write is taken for a full disk
OVERHEAD = 16 * 2**20  # tokenizer, config, trainer state, RNG and scheduler files of a checkpoint
NO_SPACE_WORDS = ("no space left on device", "os error 28", "storagefull", "disk quota exceeded")
TORCH_WRITE_WORDS = ("pytorchstreamwriter", "inline_container", "file write failed")


class SaveFailed(TuneforgeError):
    """A checkpoint or the final model could not be written (full disk, lost permission, ...)."""


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_writable(output_dir: str | Path) -> Path:
    """Write a probe file into output_dir (creating the folder for the probe, and removing what it created,
    so a run that fails later leaves no trace); ConfigError naming the reason if it cannot. Returns the
    folder whose free space the run will use."""
    out = Path(output_dir).absolute()
    created = [p for p in [out, *out.parents] if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output_dir '{output_dir}' cannot be created: {exc.strerror or exc}") from None
    probe = out / f".tuneforge-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
    except OSError as exc:
        raise ConfigError(f"output_dir '{output_dir}' is not writable ({exc.strerror or exc}); fix its permissions "
                          "or choose another output_dir") from None
    finally:
        try:
            probe.unlink(missing_ok=True)
            for folder in created:  # deepest first
                folder.rmdir()
        except OSError:
            pass
    return next(p for p in [out, *out.parents] if p.exists())


def checkpoint_bytes(cfg: RunConfig, model_config: Any, dtype_bytes: int) -> tuple[int, str] | None:
    """(bytes, how they add up) of one save: the weights it writes (the adapter, in fp32, or the whole
    model in the load precision) plus AdamW's two fp32 moments per trainable parameter when checkpoints
    are saved. Parameters are counted from config.json by model/memory; None when it cannot count them."""
    from tuneforge.model.memory.shape import count_parameters

    try:
        trainable, total = count_parameters(model_config, cfg.method)
    except Exception:  # noqa: BLE001 - an architecture the memory model does not know: no estimate
        return None
    lora = cfg.method.finetuning_type == "lora"
    weights = trainable * 4 if lora else total * dtype_bytes
    what = f"{'adapter' if lora else 'weights'} {_gib(weights)}"
    need = weights + OVERHEAD
    if cfg.train.save_strategy != "no":
        need += trainable * 8
        what += f" + optimizer state {_gib(trainable * 8)}"
    return need, what


def check_free_space(cfg: RunConfig, output_dir: Path, model_config: Any, dtype_bytes: int) -> None:
    estimate = checkpoint_bytes(cfg, model_config, dtype_bytes)
    if estimate is None:
        note(f"free space in {output_dir} not checked: the checkpoint size of this model cannot be estimated")
        return
    need, what = estimate
    free = shutil.disk_usage(output_dir).free
    if free < need:
        raise ConfigError(f"not enough free space in '{output_dir}': {_gib(free)} free, one checkpoint needs about "
                          f"{_gib(need)} ({what}); free some space or choose another output_dir")


def check_disk(cfg: RunConfig, model_config: Any, load_dtype: Any) -> None:
    """Before weights load: output_dir writable, and room for one checkpoint of this model (its
    config.json, as transformers loads it) in `load_dtype`."""
    out = check_writable(cfg.train.output_dir or ".")
    check_free_space(cfg, out, model_config, getattr(load_dtype, "itemsize", 4))


def save_failure(exc: BaseException, saving: str, output_dir: str | Path) -> SaveFailed | None:
    """The one-line error for `exc` raised while writing `saving` (e.g. "checkpoint-40"), or None when
    `exc` is not a failed write (a bug, to be raised as it is)."""
    if isinstance(exc, SaveFailed):
        return exc
    text = str(exc).lower()
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on device"
    elif any(words in text for words in NO_SPACE_WORDS):
        reason = "no space left on device"
    elif isinstance(exc, RuntimeError) and any(words in text for words in TORCH_WRITE_WORDS):
        # torch's writer says only "file write failed"; a disk with (almost) nothing left is the usual cause
        reason = "no space left on device" if _free(output_dir) < ALMOST_FULL else "a file write failed"
    elif isinstance(exc, OSError):
        reason = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    else:
        return None
    intact = complete_checkpoints(output_dir)
    tail = f"{intact[-1]} is intact" if intact else "no earlier checkpoint was saved"
    return SaveFailed(f"{reason} while saving {saving}; {tail}")


@contextmanager
def save_errors(saving: str, output_dir: str | Path) -> Iterator[None]:
    """Around a save: a failed write becomes SaveFailed (one line), anything else goes on as it is."""
    try:
        yield
    except Exception as exc:
        failure = save_failure(exc, saving, output_dir)
        if failure is None:
            raise
        raise failure from exc


def _free(path: str | Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0
