"""The page's words in English and Chinese, read from `i18n.yaml` (one data file for both)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from tuneforge.webui.layout import all_fields

LANGS = ("en", "zh")
LANG_NAMES = {"en": "English", "zh": "中文"}
FILE = Path(__file__).with_name("i18n.yaml")


@functools.lru_cache(maxsize=1)
def table() -> dict[str, dict[str, dict[str, str]]]:
    return yaml.safe_load(FILE.read_text(encoding="utf-8"))


def text(name: str, lang: str, **values: Any) -> str:
    """A button, heading or message (`ui.<name>`), with {placeholders} filled."""
    entry = table()["ui"].get(name)
    if entry is None:
        raise KeyError(f"i18n.yaml has no ui.{name}")
    words = entry.get(lang) or entry["en"]
    return words.format(**values) if values else words


def label(key: str, lang: str) -> str:
    """A field's label, with the config key it sets (what the YAML and the CLI call it)."""
    entry = table()["fields"].get(key, {})
    return f"{entry.get(lang) or entry.get('en') or key} · {key}"


def hint(key: str, lang: str) -> str:
    """A field's one-line help: the schema's description in English, the file's zh_help in Chinese."""
    entry = table()["fields"].get(key, {})
    if lang == "zh" and entry.get("zh_help"):
        return entry["zh_help"]
    return entry.get("en_help") or all_fields()[key].help


def missing(keys: set[str]) -> list[str]:
    """Visible keys and ui messages that lack a word in either language (the i18n test lists them)."""
    fields = table()["fields"]
    wrong = [f"fields.{key}.{part}" for key in sorted(keys) for part in ("en", "zh", "zh_help")
             if not (fields.get(key) or {}).get(part)]
    wrong += [f"fields.{key}: no English help" for key in sorted(keys) if not hint(key, "en")]
    wrong += [f"ui.{name}.{lang}" for name, entry in table()["ui"].items() for lang in LANGS if not entry.get(lang)]
    return wrong
