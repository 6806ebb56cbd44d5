"""The page's registry: every field component by tab and key, every translated word with where it
goes, and the shared server-side objects (the run manager, the chat engine). The tabs build their
parts through it; the language switch relabels everything it holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import yaml

from tuneforge.config.errors import ConfigError
from tuneforge.webui import i18n, widgets
from tuneforge.webui.form import FieldSpec, changed_keys, widget_value
from tuneforge.webui.layout import ALWAYS, Group, all_fields, tab_groups, tab_keys
from tuneforge.webui.runs import RunManager

PER_ROW = 4


@dataclass
class Page:
    root: Path
    lang: str
    manager: RunManager
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)  # tab ("top" for the top bar) -> key -> component
    words: list[tuple[Any, str, str]] = field(default_factory=list)  # (component, ui name, attribute)
    shared: dict[str, Any] = field(default_factory=dict)  # server-side objects the tabs share (the chat engine)

    @property
    def specs(self) -> dict[str, FieldSpec]:
        return all_fields()

    def text(self, name: str, **values: Any) -> str:
        return i18n.text(name, self.lang, **values)

    def word(self, component: Any, name: str, attr: str = "label") -> Any:
        """Register a component whose `attr` shows the ui word `name` (relabelled on a language switch)."""
        self.words.append((component, name, attr))
        return component

    def add_field(self, tab: str, key: str) -> Any:
        component = widgets.field(self.specs[key], self.lang, tab, self.root)
        self.fields.setdefault(tab, {})[key] = component
        return component

    def add_group(self, tab: str, group: Group) -> None:
        with self.word(gr.Accordion(self.text(f"group_{group.name}"), open=not group.collapsed,
                                    elem_id=f"{tab}-group-{group.name}"), f"group_{group.name}"):
            keys = [key for key in group.keys if key not in self.fields.get(tab, {})]
            for start in range(0, len(keys), PER_ROW):
                with gr.Row():
                    for key in keys[start:start + PER_ROW]:
                        self.add_field(tab, key)

    def add_groups(self, tab: str) -> None:
        for group in tab_groups(tab):
            self.add_group(tab, group)

    def inputs(self, tab: str) -> list[Any]:
        """The components a tab's config is read from: the top bar's and the tab's own."""
        return [self.component(tab, key) for key in tab_keys(tab)]

    def component(self, tab: str, key: str) -> Any:
        return self.fields.get(tab, {}).get(key) or self.fields["top"][key]

    def flat(self, tab: str, data: dict[Any, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The flat config the tab's form describes (changed keys plus the ones every YAML names)."""
        raw = {key: data[self.component(tab, key)] for key in tab_keys(tab)}
        flat = changed_keys(self.specs, raw, always=tuple(k for k in ALWAYS if k in raw))
        return {**flat, **(extra or {})}

    def fill(self, tab: str, flat: dict[str, Any]) -> dict[Any, Any]:
        """Updates that show a flat config in the tab's fields (Load config, Chat with a run)."""
        out = {}
        for key in tab_keys(tab):
            spec = self.specs[key]
            value = flat.get(key, spec.default)
            shown = widget_value(spec, value)
            if key in ("dataset", "eval_dataset", "adapter_name_or_path"):
                shown = value if isinstance(value, list) else [v.strip() for v in str(value or "").split(",") if v.strip()]
            out[self.component(tab, key)] = gr.update(value=shown)
        return out

    def relabel(self, lang: str) -> list[Any]:
        """Updates for every registered field and word in `lang`, in `self.relabel_targets()` order."""
        updates = [gr.update(label=i18n.label(key, lang), info=i18n.hint(key, lang))
                   for comps in self.fields.values() for key in comps]
        updates += [gr.update(**{attr: i18n.text(name, lang)}) for _, name, attr in self.words]
        return updates

    def relabel_targets(self) -> list[Any]:
        return [c for comps in self.fields.values() for c in comps.values()] + [c for c, _, _ in self.words]


def extra_keys(text: str) -> dict[str, Any]:
    """The "other TrainingArguments keys" box: YAML `key: value` lines (checked by the config loader)."""
    if not (text or "").strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"other keys: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError("other keys: expected 'key: value' lines")
    return data
