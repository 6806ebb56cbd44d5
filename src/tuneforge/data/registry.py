"""`dataset_info.json`: LLaMA-Factory's dataset registry, read unchanged.

A dataset name is looked up in `<dataset_dir>/dataset_info.json` first, then among the
datasets shipped inside tuneforge (`data/builtin/`), so `dataset: identity` works anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tuneforge.config.errors import ConfigError, DataError
from tuneforge.textfile import TextProblem, parse_json, read_text, reading_codec

BUILTIN_DIR = Path(__file__).parent / "builtin"
COLUMN_NAMES = {"prompt", "query", "response", "history", "messages", "system", "tools", "images",
                "videos", "audios", "chosen", "rejected", "kto_tag"}
TAG_NAMES = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag",
             "system_tag"}
ENTRY_KEYS = {"file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name",
              "formatting", "ranking", "subset", "split", "folder", "num_samples", "columns", "tags", "encoding"}

ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}
SHAREGPT_COLUMNS = {"messages": "conversations"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"}


@dataclass
class DatasetSpec:
    name: str
    load_from: Literal["file", "hf_hub", "ms_hub", "script"]
    path: str  # local path (file/folder/script) or hub id
    formatting: Literal["alpaca", "sharegpt"] = "alpaca"
    ranking: bool = False
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    num_samples: int | None = None
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    builtin: bool = False
    info_file: str = ""
    encoding: str | None = None  # of the file(s); None: UTF-8, with or without a BOM

    def column(self, key: str) -> str | None:
        defaults = ALPACA_COLUMNS if self.formatting == "alpaca" else SHAREGPT_COLUMNS
        return self.columns.get(key, defaults.get(key))

    def tag(self, key: str) -> str:
        return self.tags.get(key, SHAREGPT_TAGS[key])


def _read_info(path: Path) -> dict[str, Any]:
    try:
        info = parse_json(read_text(path))
    except TextProblem as exc:
        raise DataError(str(exc), source=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror or exc})", source=str(path)) from None
    if not isinstance(info, dict):
        raise DataError("expected an object mapping dataset names to descriptions", source=str(path))
    return info


def _names(entry: dict[str, Any], key: str, known: set[str], where: str) -> dict[str, str]:
    """`columns` or `tags`: an object mapping known roles to the dataset's names (strings)."""
    value = entry.get(key) or {}
    if not isinstance(value, dict):
        raise DataError(f"'{key}' must be an object, got {type(value).__name__}", source=where)
    for role, name in value.items():
        if role not in known:
            raise DataError(f"unknown {'column role' if key == 'columns' else 'tag'} '{role}' in '{key}' (known: "
                            f"{', '.join(sorted(known))})", source=where)
        if not isinstance(name, str):
            raise DataError(f"'{key}' maps '{role}' to {name!r}; it must be a name (a string)", source=where)
    return dict(value)


def _encoding(entry: dict[str, Any], where: str) -> str | None:
    """The entry's `encoding` (ours, not LLaMA-Factory's): a Python codec name for its text files."""
    encoding = entry.get("encoding")
    if encoding is None:
        return None
    if not isinstance(encoding, str):
        raise DataError(f"'encoding' must be a codec name such as \"gb18030\", got {encoding!r}", source=where)
    try:
        reading_codec(encoding)
    except TextProblem as exc:
        raise DataError(f"'encoding': {exc}", source=where) from None
    return encoding


def _spec(name: str, entry: Any, base_dir: Path, info_file: Path, builtin: bool) -> DatasetSpec:
    where = f"{info_file} dataset '{name}'"
    if not isinstance(entry, dict):
        raise DataError("the description must be an object", source=where)
    formatting = entry.get("formatting", "alpaca")
    tags = _names(entry, "tags", TAG_NAMES, where)
    if formatting == "openai":  # the OpenAI messages layout is ShareGPT with role/content tags
        formatting, tags = "sharegpt", {**OPENAI_TAGS, **tags}
    if formatting not in ("alpaca", "sharegpt"):
        raise DataError(f"'formatting' must be alpaca or sharegpt, got {formatting!r}", source=where)
    num_samples = entry.get("num_samples")
    if num_samples is not None and (isinstance(num_samples, bool) or not isinstance(num_samples, int)
                                    or num_samples < 1):
        raise DataError(f"'num_samples' must be a whole number above 0, got {num_samples!r}", source=where)
    common = dict(formatting=formatting, ranking=bool(entry.get("ranking", False)), subset=entry.get("subset"),
                  split=entry.get("split", "train"), folder=entry.get("folder"),
                  num_samples=num_samples, columns=_names(entry, "columns", COLUMN_NAMES, where), tags=tags,
                  builtin=builtin, info_file=str(info_file), encoding=_encoding(entry, where))
    for key in ("file_name", "script_url", "hf_hub_url", "ms_hub_url"):
        if entry.get(key) and not isinstance(entry[key], str):
            raise DataError(f"'{key}' must be a string, got {entry[key]!r}", source=where)
    if entry.get("file_name"):
        return DatasetSpec(name, "file", str(base_dir / entry["file_name"]), **common)
    if entry.get("script_url"):
        return DatasetSpec(name, "script", str(base_dir / entry["script_url"]), **common)
    if entry.get("hf_hub_url"):
        return DatasetSpec(name, "hf_hub", entry["hf_hub_url"], **common)
    if entry.get("ms_hub_url"):
        return DatasetSpec(name, "ms_hub", entry["ms_hub_url"], **common)
    raise DataError("needs one of file_name, hf_hub_url, ms_hub_url or script_url", source=where)


def builtin_names() -> list[str]:
    return sorted(_read_info(BUILTIN_DIR / "dataset_info.json"))


def resolve(names: list[str], dataset_dir: str) -> list[DatasetSpec]:
    """Dataset names -> specs, user's dataset_info.json first, then tuneforge's built-ins."""
    info_path = Path(dataset_dir).expanduser() / "dataset_info.json"
    user = _read_info(info_path) if info_path.is_file() else {}
    builtin_path = BUILTIN_DIR / "dataset_info.json"
    builtin = _read_info(builtin_path)
    specs = []
    for name in names:
        if name in user:
            specs.append(_spec(name, user[name], info_path.parent, info_path, builtin=False))
        elif name in builtin:
            specs.append(_spec(name, builtin[name], BUILTIN_DIR, builtin_path, builtin=True))
        else:
            if not info_path.parent.is_dir():
                raise ConfigError(f"dataset '{name}' is not built in and dataset_dir '{dataset_dir}' does not "
                                  f"exist (built-in: {', '.join(sorted(builtin))})")
            if not info_path.is_file():
                raise ConfigError(f"dataset '{name}' is not built in and {info_path} does not exist "
                                  f"(built-in: {', '.join(sorted(builtin))})")
            import difflib

            guess = difflib.get_close_matches(name, list(user) + list(builtin), n=1, cutoff=0.6)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            raise ConfigError(f"dataset '{name}' is not in {info_path} nor built in{hint}")
    return specs
