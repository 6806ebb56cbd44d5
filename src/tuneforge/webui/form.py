"""The config schema as form fields, and form values back to config keys (no gradio here).

Each field of `config/schema.py` becomes a `FieldSpec`: its widget kind from the type, its default,
its choices from a `Literal`, its one-line help from the field's `description`. A key added to the
schema appears in the form without touching the UI (`layout.py` only says where it goes).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from tuneforge.config.schema import SECTIONS

Kind = Literal["bool", "tristate", "int", "float", "choice", "text", "list"]
TRISTATE = ("auto", "true", "false")  # bool | None: "auto" leaves the key unset


@dataclass(frozen=True)
class FieldSpec:
    key: str
    section: str
    kind: Kind
    default: Any  # the schema's default (None when unset or required)
    help: str
    choices: tuple[str, ...] = ()
    required: bool = False


def _kind(annotation: Any) -> tuple[Kind, tuple[str, ...]]:
    """The widget for a field's type: Literal -> choice, bool | None -> tristate, list -> comma text."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "choice", tuple(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        if len(args) == 1:
            inner, choices = _kind(args[0])
            if inner == "bool":
                return "tristate", TRISTATE
            return inner, ("", *choices) if choices else ()  # "" leaves an optional choice unset
        return ("list" if any(typing.get_origin(a) is list for a in args) and str in args else "text"), ()
    if origin is list:
        return "list", ()
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    return "text", ()


def schema_fields() -> dict[str, FieldSpec]:
    """Every key of every config section, in schema order (the `extra` mapping is not a key)."""
    specs: dict[str, FieldSpec] = {}
    for section, cls in SECTIONS.items():
        for key, info in cls.model_fields.items():
            if key == "extra":
                continue
            kind, choices = _kind(info.annotation)
            required = info.is_required()
            default = None if required else info.get_default(call_default_factory=True)
            specs[key] = FieldSpec(key, section, kind, default, info.description or "", choices, required)
    return specs


def widget_value(spec: FieldSpec, value: Any) -> Any:
    """A config value as its widget shows it."""
    if spec.kind == "tristate":
        return "auto" if value is None else ("true" if value else "false")
    if spec.kind == "list":
        if value is None:
            return ""
        return ", ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    if spec.kind in ("text", "choice") or spec.kind in ("int", "float") and optional(spec):
        return "" if value is None else str(value)
    return value


def optional(spec: FieldSpec) -> bool:
    """A number that may be left unset: shown as a text field (a number field cannot be empty)."""
    return spec.default is None and not spec.required


def config_value(spec: FieldSpec, raw: Any) -> Any:
    """A widget's value as the config key's value (empty -> unset). Numbers stay as typed, so a
    fraction in a whole-number field reaches the config's own check and its message."""
    if spec.kind == "tristate":
        return None if raw in (None, "", "auto") else raw in (True, "true")
    if spec.kind in ("int", "float"):
        if isinstance(raw, str):
            raw = _number(raw.strip())
        if raw is None or raw == "":
            return None
        if spec.kind == "int" and isinstance(raw, float) and raw.is_integer():
            return int(raw)
        return raw
    if spec.kind == "list":
        if isinstance(raw, (list, tuple)):
            return [str(v) for v in raw] or None
        parts = [p.strip() for p in str(raw or "").split(",") if p.strip()]
        if len(parts) == 1 and isinstance(spec.default, str):  # report_to: one name or a list
            return parts[0]
        return parts or None
    if spec.kind in ("text", "choice"):
        text = str(raw).strip() if raw is not None else ""
        if not text:
            return None
        return _scalar(text) if spec.key == "resume_from_checkpoint" else text
    return bool(raw)


def _number(text: str) -> Any:
    """A number typed into a text field (optional numbers are text: empty means unset); anything else is
    passed on as typed, for the config's own check to word."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text or None


def _scalar(text: str) -> Any:
    """`true` typed into a text field that also takes booleans (resume_from_checkpoint)."""
    return {"true": True, "false": False}.get(text.lower(), text)


def changed_keys(specs: dict[str, FieldSpec], values: dict[str, Any], always: tuple[str, ...] = ()) -> dict[str, Any]:
    """The flat config a form describes: every key whose value differs from the schema default,
    plus `always` (so the YAML names the model, stage, method and data even at their defaults)."""
    out: dict[str, Any] = {}
    for key, raw in values.items():
        spec = specs[key]
        value = config_value(spec, raw)
        default = spec.default
        if spec.kind == "list" and isinstance(default, list):
            default = default or None
        if key in always and value is not None or value != default:
            out[key] = value
    return out


def yaml_text(flat: dict[str, Any]) -> str:
    """The YAML the UI writes and previews (key order as given, Chinese kept readable)."""
    return yaml.safe_dump(flat, allow_unicode=True, sort_keys=False)
