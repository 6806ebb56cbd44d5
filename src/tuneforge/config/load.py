"""YAML + `key=value` overrides -> validated RunConfig.

Accepts LLaMA-Factory's flat key names. Keys the installed transformers no longer has are
mapped onto what exists (transformers 5.x: `warmup_ratio` -> float `warmup_steps`,
`no_cuda` -> `use_cpu`; `overwrite_output_dir` is ours). Every mistake becomes one ConfigError
line that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import os
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tuneforge.config.distributed import check_distributed
from tuneforge.config.errors import ConfigError
from tuneforge.config.extras import check_extras
from tuneforge.config.lf_keys import BOOSTERS, LF_UNSUPPORTED, RENAMED, STAGE_HINTS, VALUE_ALIASES, VALUE_HINTS
from tuneforge.config.schema import QUANTIZATION_BITS, SECTIONS, RunConfig, split_list
from tuneforge.config.stages import facts
from tuneforge.textfile import TextProblem, read_text

# LLaMA-Factory keys accepted so its YAML files load unchanged, although nothing acts on them here:
# key -> the note printed when one is set.
COMPAT_ONLY = {
    "disable_version_check": "has no effect: tuneforge declares the library versions it was tested with "
                             "in its package metadata and never checks them at run time",
    "ddp_timeout_minutes": "has no effect; use transformers' ddp_timeout (seconds)",
    "low_cpu_mem_usage": "has no effect: transformers 5 always loads weights without a second copy in memory",
    "print_param_status": "has no effect: tuneforge prints the trainable and total parameter counts",
}
# Values of TrainingArguments' enum-typed keys that every supported transformers accepts; any
# other value is checked against the installed transformers.
COMMON_VALUES = {
    "lr_scheduler_type": {"linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                          "constant_with_warmup", "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr"},
    "save_strategy": {"no", "steps", "epoch"},
    "eval_strategy": {"no", "steps", "epoch"},
}
# Keys that other commands read (kept so that one YAML can serve several commands).
GENERATE_KEYS = set(SECTIONS["generate"].model_fields)


@functools.lru_cache(maxsize=1)
def training_argument_fields() -> dict[str, Any]:
    """Field name -> type of the installed transformers.TrainingArguments (imported lazily)."""
    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(TrainingArguments) if f.init}


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. learning_rate=1e-4)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key.replace("-", "_")] = value
    return out


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """' line N: not valid YAML (what)' from PyYAML's error."""
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    # PyYAML finds an unclosed bracket or quote on a later line; say where it was opened
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and (mark is None or start.line != mark.line):
        problem += f"; {context} that starts at line {start.line + 1}"
    return f"{where}: not valid YAML ({problem})"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file's top-level keys. UTF-8 with or without a BOM (Windows editors); any
    other encoding is named with the command that converts it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}{_yaml_problem(exc)}") from None
    except TextProblem as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected 'key: value' lines at the top level")
    for key in raw:
        if not isinstance(key, str):
            raise ConfigError(f"{path}: key {key!r} is not a name (keys are words such as learning_rate; YAML "
                              "reads yes/no/on/off and numbers as values, so quote such a key)")
    return raw


def _coerce_training_arg(key: str, value: Any, hint: Any, where: str) -> Any:
    """YAML 1.1 reads `1e-8` as a string; coerce numbers for TrainingArguments extras."""
    if isinstance(value, str):
        args = typing.get_args(hint) or (hint,)
        for typ in (int, float):
            if typ in args:
                try:
                    return typ(value)
                except ValueError:
                    if typ is float:
                        raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}") from None
    return value


def route(flat: dict[str, Any], where: str, notes: list[str]) -> dict[str, dict[str, Any]]:
    """Send each flat key to its section; map renamed keys; reject unknown ones."""
    flat = _renamed(dict(flat), where, notes)
    for key, value in list(flat.items()):
        if key.endswith("_strategy") and value is False:
            flat[key] = "no"  # YAML 1.1 reads an unquoted `no` as false
    stage = flat.get("stage")
    if isinstance(stage, str) and stage in STAGE_HINTS:
        raise ConfigError(f"{where}: there is no stage '{stage}'; {STAGE_HINTS[stage]}")
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    owner = {field: name for name, cls in SECTIONS.items() for field in cls.model_fields if field != "extra"}
    for key, value in flat.items():
        if key in owner:
            sections[owner[key]][key] = value
        elif key in COMPAT_ONLY:
            if value not in (None, False):
                notes.append(f"'{key}' {COMPAT_ONLY[key]}")
        elif _switched_off(key, value, where):
            continue
        elif key in training_argument_fields():
            sections["train"].setdefault("extra", {})[key] = _coerce_training_arg(
                key, value, training_argument_fields()[key], where)
        else:
            known = set(owner) | set(LF_UNSUPPORTED) | set(training_argument_fields()) | set(RENAMED) | {"warmup_ratio"}
            guess = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
    return sections


def _switched_off(key: str, value: Any, where: str) -> bool:
    """A LLaMA-Factory key we do not support: harmless when switched off, refused when on."""
    if key not in LF_UNSUPPORTED:
        return False
    if value in (None, False, "none", "None", 0):
        return True
    raise ConfigError(f"{where}: '{key}' is a LLaMA-Factory key tuneforge does not support yet "
                      f"({LF_UNSUPPORTED[key]}); remove it to continue")


def _renamed(flat: dict[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    """Keys transformers renamed or dropped, mapped onto what the installed version has."""
    _lf_values(flat, where)
    if "warmup_ratio" in flat:
        ratio = _warmup_ratio(flat.pop("warmup_ratio"), where)
        if flat.get("warmup_steps") not in (None, 0):
            raise ConfigError(f"{where}: set either warmup_ratio or warmup_steps, not both")
        if ratio:
            flat["warmup_steps"] = ratio  # transformers 5: a float warmup_steps below 1 is a ratio
    for old, (new, note) in RENAMED.items():
        if old not in flat:
            continue
        value = flat.pop(old)
        if old == "group_by_length":
            if value:
                flat.setdefault("train_sampling_strategy", "group_by_length")
            continue
        if new is not None:
            flat.setdefault(new, bool(value) if old == "no_cuda" else value)
        if note and (value or new is not None):
            notes.append(f"'{old}' {note}")
    return flat


def _lf_values(flat: dict[str, Any], where: str) -> None:
    """What LLaMA-Factory's web UI and docs write, in our words: `booster`, `flash_attn: flashattn2`,
    `use_swanlab`, `hf_hub_token` (in place)."""
    booster = flat.pop("booster", None)
    if booster not in (None, False, "auto", "none"):
        if str(booster) not in BOOSTERS:
            raise ConfigError(f"{where}: 'booster' must be auto, {', '.join(BOOSTERS)}, got {booster!r}")
        key, value = BOOSTERS[str(booster)]
        flat.setdefault(key, value)
    for (key, value), meant in VALUE_ALIASES.items():
        if flat.get(key) == value:
            flat[key] = meant
    token = flat.pop("hf_hub_token", None)
    if token:  # the hub library reads HF_TOKEN; kept out of the config so training_args.yaml never holds it
        os.environ.setdefault("HF_TOKEN", str(token))
    if flat.pop("use_swanlab", False):
        reporters = [r for r in split_list(flat.get("report_to")) or [] if r != "none"]
        flat["report_to"] = list(dict.fromkeys([*reporters, "swanlab"]))


def _warmup_ratio(value: Any, where: str) -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: 'warmup_ratio' must be a number, got {value!r}") from None
    if not 0 <= ratio < 1:
        raise ConfigError(f"{where}: 'warmup_ratio' must be at least 0 and below 1 (a fraction of the training "
                          f"steps), got {value!r}; for a number of warm-up steps use warmup_steps")
    return ratio


def _pydantic_message(exc: ValidationError, where: str, sections: dict[str, dict[str, Any]]) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not str(p).isdigit()]
    key = loc[-1] if loc else "?"
    if key in SECTIONS and len(loc) == 1:
        key = loc[0]
    msg = err["msg"]
    if err["type"] == "missing":
        return f"{where}: '{key}' is required"
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict) and value is not None else ""
    if err["type"] == "literal_error":
        msg = msg.replace("Input should be", "must be")
    hint = VALUE_HINTS.get((key, value)) if isinstance(value, str) else None
    return f"{where}: '{key}': {msg}{shown}" + (f"; {hint}" if hint else "")


def load(path: str | Path | None = None, overrides: list[str] | None = None,
         base: dict[str, Any] | None = None) -> tuple[RunConfig, list[str]]:
    """Read YAML (or `base`), apply overrides, validate. Returns the config and notes to print."""
    flat: dict[str, Any] = dict(base or {})
    where = "config"
    if path is not None:
        flat.update(read_yaml(path))
        where = str(path)
    flat.update(parse_overrides(overrides or []))
    notes: list[str] = []
    sections = route(flat, where, notes)
    try:
        cfg = RunConfig(**{name: values for name, values in sections.items() if values or name == "model"},
                        source=str(path) if path else None)
    except ValidationError as exc:
        raise ConfigError(_pydantic_message(exc, where, sections)) from None
    _check_training_values(cfg, where)
    _check_consistency(cfg, where)
    return cfg, notes


def _check_training_values(cfg: RunConfig, where: str) -> None:
    """Values transformers checks only when TrainingArguments is built (after output_dir is
    written): enum-valued keys (lr_scheduler_type, optim, save_strategy, ...) and report_to."""
    t = cfg.train
    # Everyday values are taken as they are: importing TrainingArguments costs seconds, and a
    # config or data mistake should still be reported at once.
    values = {k: getattr(t, k) for k in COMMON_VALUES if getattr(t, k) not in COMMON_VALUES[k]}
    values.update({k: v for k, v in t.extra.items() if isinstance(v, str)})  # route() imported it already
    reporters = [t.report_to] if isinstance(t.report_to, str) else list(t.report_to)
    reporters = [r for r in reporters if r not in ("none", "all")]
    if not values and not reporters:
        return
    hints = training_argument_fields()
    for key, value in values.items():
        kinds = [a for a in (typing.get_args(hints.get(key)) or (hints.get(key),))
                 if isinstance(a, type) and issubclass(a, enum.Enum)]
        if not kinds:
            continue
        allowed = [str(member.value) for member in kinds[0]]
        if str(value) not in allowed:
            guess = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.6)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            raise ConfigError(f"{where}: '{key}': unknown value {value!r}{hint} (choose from {', '.join(allowed)})")
    if reporters:
        from transformers.integrations.integration_utils import (
            INTEGRATION_TO_CALLBACK,
            get_available_reporting_integrations,
        )

        available = get_available_reporting_integrations()
        for name in reporters:
            if name not in INTEGRATION_TO_CALLBACK:
                guess = difflib.get_close_matches(name, list(INTEGRATION_TO_CALLBACK), n=1, cutoff=0.6)
                hint = f"; did you mean '{guess[0]}'?" if guess else ""
                raise ConfigError(f"{where}: 'report_to': unknown logger {name!r}{hint} (choose from none, all, "
                                  f"{', '.join(INTEGRATION_TO_CALLBACK)})")
            if name not in available:
                raise ConfigError(f"{where}: 'report_to' {name!r} needs the {name} package; `pip install {name}` "
                                  "or set report_to: none")


def _check_consistency(cfg: RunConfig, where: str) -> None:
    t, d = cfg.train, cfg.data
    if t.do_predict and not t.predict_with_generate:
        raise ConfigError(f"{where}: do_predict needs predict_with_generate: true")
    if t.bf16 + t.fp16 + t.pure_bf16 > 1:
        raise ConfigError(f"{where}: {' and '.join(k for k in ('bf16', 'fp16', 'pure_bf16') if getattr(t, k))} are "
                          "on together; choose one")
    if t.eval_strategy != "no" and not (d.val_size or d.eval_dataset):
        raise ConfigError(f"{where}: eval_strategy is '{t.eval_strategy}' but there is nothing to evaluate "
                          "on; set val_size or eval_dataset")
    if cfg.method.finetuning_type != "lora" and cfg.model.adapter_name_or_path and t.do_train:
        raise ConfigError(f"{where}: adapter_name_or_path needs finetuning_type: lora")
    if cfg.model.rope_scaling and cfg.model.model_max_length is None and t.do_train:
        cfg.model.model_max_length = d.cutoff_len  # LLaMA-Factory: the context to scale RoPE to is cutoff_len
    _check_quantization(cfg, where)
    _check_data_scale(cfg, where)
    check_distributed(cfg, where)  # deepspeed / fsdp files and package
    if (extras_problem := check_extras(cfg.method, cfg.train, cfg.pref)) is not None:  # LoRA+, GaLore, BAdam, ...
        raise ConfigError(f"{where}: {extras_problem}")


def _check_quantization(cfg: RunConfig, where: str) -> None:
    m = cfg.model
    if m.quantization_bit is None:
        return
    bits = QUANTIZATION_BITS[m.quantization_method]
    if m.quantization_bit not in bits:
        raise ConfigError(f"{where}: 'quantization_bit': quantization_method {m.quantization_method} quantizes to "
                          f"{' or '.join(map(str, bits))} bits, not {m.quantization_bit}")
    if not cfg.train.do_train:
        return  # chat, predict and the API may load any model quantized
    if cfg.method.finetuning_type != "lora":
        raise ConfigError(f"{where}: quantization_bit needs finetuning_type: lora (QLoRA: adapters train on the "
                          f"quantized base); finetuning_type {cfg.method.finetuning_type} would train the quantized "
                          "weights themselves. Remove quantization_bit, or use lora")
    if len(m.adapter_name_or_path or []) > 1 or (m.adapter_name_or_path and cfg.method.create_new_adapter):
        raise ConfigError(f"{where}: quantization_bit with several adapters (or create_new_adapter) would merge "
                          "adapters into quantized weights; merge them into the full-precision base first (tuneforge "
                          "export), then train on the export")


def _check_data_scale(cfg: RunConfig, where: str) -> None:
    """streaming, interleave_probs and tokenized_path against the rest of the config."""
    d, t = cfg.data, cfg.train
    names = d.dataset or []
    if d.interleave_probs is not None:
        if d.mix_strategy == "concat":
            raise ConfigError(f"{where}: interleave_probs needs mix_strategy: interleave_under or interleave_over "
                              "(concat reads the datasets one after another)")
        if len(d.interleave_probs) != len(names):
            raise ConfigError(f"{where}: interleave_probs has {len(d.interleave_probs)} values for {len(names)} "
                              f"datasets ({', '.join(names)}); give one per dataset")
        if min(d.interleave_probs) < 0 or abs(sum(d.interleave_probs) - 1) > 1e-6:
            raise ConfigError(f"{where}: interleave_probs must be probabilities adding up to 1, got "
                              f"{', '.join(map(str, d.interleave_probs))}")
    if not d.streaming:
        return
    if d.tokenized_path:
        raise ConfigError(f"{where}: tokenized_path saves the datasets tokenized ahead of training, streaming encodes "
                          "them while training; choose one")
    if facts(cfg.method.stage).data not in ("supervised", "pretrain"):
        raise ConfigError(f"{where}: streaming: true works with stage sft and pt; stage {cfg.method.stage} reads its "
                          "data whole (remove streaming)")
    if t.do_train and t.max_steps <= 0:
        raise ConfigError(f"{where}: streaming: true needs max_steps (a stream has no length, so num_train_epochs "
                          "cannot tell when to stop)")
    if d.packing or d.neat_packing:
        raise ConfigError(f"{where}: packing needs the whole dataset to sort samples into rows; it does not work with "
                          "streaming: true")
    if d.val_size and d.val_size < 1:
        raise ConfigError(f"{where}: with streaming: true, val_size is a number of samples (the first ones of the "
                          f"stream), not a share, got {d.val_size}")
