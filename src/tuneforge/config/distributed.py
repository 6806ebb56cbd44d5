"""`deepspeed:` and `fsdp:` checked before anything starts: one line for each mistake, never the
Trainer's traceback (a missing file, a file that is not JSON, both engines at once, the package absent).

The values themselves go to transformers' TrainingArguments unchanged (train/arguments.py): the HF
Trainer fills DeepSpeed's "auto" values from the run's own settings and drives ZeRO and FSDP.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import DistConfig, RunConfig
from tuneforge.textfile import TextProblem, parse_json, read_text

# LLaMA-Factory's ZeRO config names, shipped with the package (examples/deepspeed/ holds the same files): a
# `deepspeed: examples/deepspeed/ds_z3_config.json` line works from any folder, as in a LLaMA-Factory checkout
PRESETS = Path(__file__).parent / "deepspeed"
SHIPPED = "examples/deepspeed/ (ds_z0_config.json, ds_z2_config.json, ds_z2_offload_config.json, ds_z3_config.json, " \
          "ds_z3_offload_config.json)"


def read_json_setting(value: str | dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """A JSON-file setting (`deepspeed:`, `fsdp_config:`) as its mapping; ConfigError naming the file and the key."""
    if isinstance(value, dict):
        return value
    path = Path(value)
    if not path.is_file():
        hint = f"; tuneforge ships ZeRO configs in {SHIPPED}" if key == "deepspeed" else ""
        raise ConfigError(f"{where}: '{key}': file {value} does not exist{hint}")
    try:
        content = parse_json(read_text(path))
    except TextProblem as exc:
        raise ConfigError(f"{where}: '{key}': {value}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{where}: '{key}': cannot read {value} ({exc.strerror or exc})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{where}: '{key}': {value} holds a JSON {type(content).__name__}, not an object")
    return content


def zero_stage(dist: DistConfig) -> int | None:
    """The ZeRO stage of `deepspeed:` (0-3), None without DeepSpeed or when the config cannot be read (the
    load-time check has reported that already)."""
    if dist.deepspeed is None:
        return None
    try:
        ds = read_json_setting(dist.deepspeed, "deepspeed", "")
    except ConfigError:
        return None
    try:
        return int(ds.get("zero_optimization", {}).get("stage", 0))
    except (TypeError, ValueError, AttributeError):
        return None


def check_distributed(cfg: RunConfig, where: str) -> None:
    """Mistakes in the multi-process keys, for a training run."""
    d = cfg.dist
    if not cfg.train.do_train:
        return  # chat, export and predict reuse training YAMLs: these keys do nothing there
    if d.deepspeed is not None and d.fsdp:
        raise ConfigError(f"{where}: 'deepspeed' and 'fsdp' are both set; they are two ways of sharding the same "
                          "model: choose one")
    if d.fsdp_config is not None:
        read_json_setting(d.fsdp_config, "fsdp_config", where)
    if d.deepspeed is None:
        return
    if isinstance(d.deepspeed, str) and not Path(d.deepspeed).is_file() and (PRESETS / Path(d.deepspeed).name).is_file():
        d.deepspeed = str(PRESETS / Path(d.deepspeed).name)  # a shipped name, not in this folder: the package's copy
    ds = read_json_setting(d.deepspeed, "deepspeed", where)
    stage = ds.get("zero_optimization", {}).get("stage", 0) if isinstance(ds.get("zero_optimization", {}), dict) else None
    if str(stage) not in ("0", "1", "2", "3"):
        raise ConfigError(f"{where}: 'deepspeed': zero_optimization.stage must be 0, 1, 2 or 3, got {stage!r}")
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(f"{where}: 'deepspeed' needs the deepspeed package: pip install 'tuneforge[deepspeed]'")
