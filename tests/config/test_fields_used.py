"""Every config key a user can set does something: each field of every config section is read
somewhere in the package (an attribute access outside config/schema.py). The keys accepted only so
that LLaMA-Factory's YAML loads unchanged are not fields: they live in config/load.py's COMPAT_ONLY,
and each prints a note when set. A new key that nothing reads fails here."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from tuneforge.config.load import COMPAT_ONLY, load
from tuneforge.config.schema import SECTIONS

SRC = Path(__file__).resolve().parents[2] / "src" / "tuneforge"

@functools.lru_cache(maxsize=1)
def attributes_read() -> set[str]:
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        if path == SRC / "config" / "schema.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
    return names


FIELDS = sorted((section, name) for section, cls in SECTIONS.items() for name in cls.model_fields)


@pytest.mark.parametrize("section,name", FIELDS, ids=[f"{s}.{n}" for s, n in FIELDS])
def test_every_config_field_is_read_somewhere(section, name):
    assert name in attributes_read(), (f"config key '{name}' ({section}) is accepted but nothing reads it: "
                                       "make it act, refuse it, or allow-list it with a note")


@pytest.mark.parametrize("key", sorted(COMPAT_ONLY))
def test_compatibility_only_keys_say_so_when_set(key):
    cfg, notes = load(base={"model_name_or_path": "tuneforge/tiny", "do_train": False, key: True})
    assert any(note.startswith(f"'{key}' has no effect") for note in notes)
    assert key not in cfg.flat()  # nothing downstream can depend on it
