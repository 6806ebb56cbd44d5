"""One gradio component per form field: the widget follows the field's kind (`form.py`); a few keys
get a richer widget with choices read from the project (models, templates, datasets, adapters)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from tuneforge.config.schema import DataConfig
from tuneforge.webui import i18n
from tuneforge.webui.form import FieldSpec, optional, widget_value
from tuneforge.webui.layout import MODELS
from tuneforge.webui.runs import discover

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr")
STRATEGIES = ("no", "steps", "epoch")


def template_choices() -> list[str]:
    from tuneforge.data.templates import template_names

    return template_names()


def dataset_choices(dataset_dir: str | None) -> list[str]:
    """Names in dataset_dir/dataset_info.json, then tuneforge's built-in ones."""
    from tuneforge.data.registry import builtin_names

    names: list[str] = []
    info = Path(dataset_dir or "data").expanduser() / "dataset_info.json"
    try:
        names = list(json.loads(info.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        names = []
    return names + [name for name in builtin_names() if name not in names]


def adapter_choices(root: str | Path) -> list[str]:
    """Adapters of the runs under the output root, and their checkpoints."""
    found = []
    for run in discover(root):
        folders = [run.path, *sorted(run.path.glob("checkpoint-*"))]
        found += [str(p) for p in folders if (p / "adapter_config.json").is_file()]
    return found


def default_output_dir(root: str | Path, model: str | None, method: str | None, prefix: str = "train") -> str:
    """saves/<model>/<method>/train_<time>: a fresh folder per run, LLaMA-Factory's layout (train/outputs.py)."""
    from tuneforge.train.outputs import default_output_dir as under_root

    return under_root(model, method, root, prefix)


def _special(spec: FieldSpec, common: dict[str, Any], root: str | Path) -> Any:
    key = spec.key
    if key == "model_name_or_path":
        return gr.Dropdown(choices=list(MODELS), value=None, allow_custom_value=True, **common)
    if key == "template":
        return gr.Dropdown(choices=template_choices(), value=None, allow_custom_value=True, **common)
    if key in ("dataset", "eval_dataset"):
        return gr.Dropdown(choices=dataset_choices(DataConfig().dataset_dir), value=[], multiselect=True,
                           allow_custom_value=True, **common)
    if key == "adapter_name_or_path":
        return gr.Dropdown(choices=adapter_choices(root), value=[], multiselect=True, allow_custom_value=True,
                           **common)
    if key == "lr_scheduler_type":
        return gr.Dropdown(choices=list(SCHEDULERS), value=spec.default, allow_custom_value=True, **common)
    if key in ("save_strategy", "eval_strategy"):
        return gr.Dropdown(choices=list(STRATEGIES), value=spec.default, allow_custom_value=True, **common)
    if key == "default_system":
        return gr.Textbox(value="", lines=2, **common)
    return None


def field(spec: FieldSpec, lang: str, tab: str, root: str | Path) -> Any:
    """The component for one field; its elem_id is `<tab>-<key>` (what the browser tests find)."""
    common = dict(label=i18n.label(spec.key, lang), info=i18n.hint(spec.key, lang), elem_id=f"{tab}-{spec.key}")
    special = _special(spec, common, root)
    if special is not None:
        return special
    value = widget_value(spec, spec.default)
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if spec.kind in ("tristate", "choice"):
        return gr.Dropdown(choices=list(spec.choices), value=value, **common)
    if spec.kind in ("int", "float") and not optional(spec):
        return gr.Number(value=value, **common)
    return gr.Textbox(value=value, **common)
