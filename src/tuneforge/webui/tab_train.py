"""The Train tab: the form, data preview, memory estimate, command preview, save/load, Start/Stop,
and the live view of the watched run (progress, charts, log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import yaml

from tuneforge.webui import actions, i18n
from tuneforge.webui.form import yaml_text
from tuneforge.webui.layout import ESTIMATE_KEYS, MODELS, tab_keys
from tuneforge.webui.page import Page, extra_keys
from tuneforge.webui.runs import CONFIG_FILE, train_command
from tuneforge.webui.views import error_html, monitor_view, note_html
from tuneforge.webui.widgets import dataset_choices, default_output_dir

BUTTONS = ("preview_data", "preview_command", "save", "load", "start", "stop")


def build(page: Page, watched: gr.State) -> dict[str, Any]:
    """Lay the tab out and wire its buttons; returns the components the app and the timer use."""
    page.add_groups("train")
    with page.word(gr.Accordion(page.text("group_launch"), open=False, elem_id="train-group-launch"), "group_launch"):
        with gr.Row():
            devices = page.word(gr.Textbox(label=page.text("devices"), elem_id="train-devices"), "devices")
            extra = page.word(gr.Textbox(label=page.text("extra_keys"), lines=3, elem_id="train-extra"), "extra_keys")
            config_file = page.word(gr.Textbox(label=page.text("config_file"), value="webui_saved.yaml",
                                               elem_id="train-config-file"), "config_file")
    page.shared["train_extra"] = extra
    with gr.Row():
        buttons = {name: page.word(gr.Button(page.text(name), elem_id=f"train-{name}",
                                             variant="primary" if name == "start" else "secondary"), name, "value")
                   for name in BUTTONS}
    message = gr.HTML(elem_id="train-message")
    with page.word(gr.Accordion(page.text("estimate"), elem_id="train-group-estimate"), "estimate"):
        estimate = gr.HTML(note_html(page.text("estimate_empty")), elem_id="train-estimate")
    with page.word(gr.Accordion(page.text("preview"), elem_id="train-group-preview"), "preview"):
        preview = gr.HTML(elem_id="train-preview")
        command = page.word(gr.Textbox(label=page.text("command"), elem_id="train-command"), "command")
        config_yaml = page.word(gr.Code(language="yaml", label=page.text("yaml"), elem_id="train-yaml"), "yaml")
    ui = dict(devices=devices, extra=extra, config_file=config_file, message=message, estimate=estimate,
              preview=preview, command=command, config_yaml=config_yaml, **buttons)
    ui["view"] = monitor_view(page, "train")
    _wire(page, ui, watched)
    return ui


def _wire(page: Page, ui: dict[str, Any], watched: gr.State) -> None:
    lang = page.shared["lang"]
    form = set(page.inputs("train")) | {ui["extra"], lang}
    ui["preview_data"].click(lambda data: _preview_data(page, data), inputs=form, outputs=[ui["preview"], ui["message"]])
    ui["preview_command"].click(lambda data: _preview_command(page, data), inputs=form,
                                outputs=[ui["command"], ui["config_yaml"], ui["message"]])
    ui["save"].click(lambda data: _save(page, data, ui["config_file"]), inputs=form | {ui["config_file"]},
                     outputs=ui["message"])
    ui["load"].click(lambda path, code: _load(page, path, code), inputs=[ui["config_file"], lang],
                     outputs=[*page.inputs("train"), ui["extra"], ui["message"]])
    ui["start"].click(lambda data: _start(page, data, ui["devices"]), inputs=form | {ui["devices"]},
                      outputs=[ui["message"], watched], concurrency_limit=1, concurrency_id="start")
    ui["stop"].click(lambda path, code: _stop(page, path, code), inputs=[watched, lang], outputs=ui["message"])
    gr.on([page.component("train", key).change for key in ESTIMATE_KEYS],
          lambda data: _estimate(page, data), inputs=form, outputs=ui["estimate"],
          trigger_mode="always_last", concurrency_limit=1, concurrency_id="estimate", show_progress="hidden")
    model, method = page.component("train", "model_name_or_path"), page.component("train", "finetuning_type")
    gr.on([model.change, method.change], lambda m, f: _model_chosen(page, m, f), inputs=[model, method],
          outputs=[page.component("train", "template"), page.component("train", "output_dir")])
    dataset_dir = page.component("train", "dataset_dir")
    dataset_dir.change(lambda folder: gr.update(choices=dataset_choices(folder)), inputs=dataset_dir,
                       outputs=page.component("train", "dataset"))


def flat_config(page: Page, data: dict[Any, Any]) -> dict[str, Any]:
    """The Train tab's config: the form's changed keys plus the "other keys" box."""
    return {"do_train": True, **page.flat("train", data, extra_keys(data[page.shared["train_extra"]]))}


def preview_command(flat: dict[str, Any]) -> tuple[str, str]:
    """The exact command and YAML Start runs (the YAML lands in output_dir as webui_config.yaml)."""
    path = Path(flat.get("output_dir") or ".") / CONFIG_FILE
    return " ".join(train_command(path)), yaml_text(flat)


def _preview_data(page: Page, data: dict[Any, Any]) -> tuple[str, str]:
    lang = data[page.shared["lang"]]
    try:
        flat = flat_config(page, data)
        return actions.data_preview({**flat, "output_dir": flat.get("output_dir") or "unused-by-preview"}), ""
    except Exception as exc:  # noqa: BLE001 - shown in the page
        return "", error_html(exc, lang)


def _preview_command(page: Page, data: dict[Any, Any]) -> tuple[str, str, str]:
    lang = data[page.shared["lang"]]
    try:
        flat = flat_config(page, data)
    except Exception as exc:  # noqa: BLE001 - shown in the page
        return "", "", error_html(exc, lang)
    command, text = preview_command(flat)
    try:
        notes = actions.check_train(flat)
    except Exception as exc:  # noqa: BLE001 - shown in the page
        return command, text, error_html(exc, lang)
    return command, text, "".join(note_html(line) for line in [i18n.text("checks_passed", lang), *notes])


def _save(page: Page, data: dict[Any, Any], config_file: Any) -> str:
    lang = data[page.shared["lang"]]
    try:
        flat = flat_config(page, data)
        path = Path(data[config_file] or "webui_saved.yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml_text(flat), encoding="utf-8")
    except Exception as exc:  # noqa: BLE001 - shown in the page
        return error_html(exc, lang)
    return note_html(i18n.text("saved", lang, path=path))


def _load(page: Page, path: str, lang: str) -> list[Any]:
    """Show a YAML in the form; keys the form has no field for go to the "other keys" box."""
    from tuneforge.config.load import read_yaml

    try:
        flat = read_yaml(path)
    except Exception as exc:  # noqa: BLE001 - shown in the page
        return [gr.update() for _ in page.inputs("train")] + [gr.update(), error_html(exc, lang)]
    updates = page.fill("train", flat)
    rest = {k: v for k, v in flat.items() if k not in tab_keys("train")}
    extra = yaml.safe_dump(rest, allow_unicode=True, sort_keys=False) if rest else ""
    return [updates[c] for c in page.inputs("train")] + [extra, note_html(i18n.text("loaded", lang, path=path))]


def _start(page: Page, data: dict[Any, Any], devices: Any) -> tuple[str, Any]:
    """Check as `train` would, then write the run's files and start (or queue) it. Nothing starts on a mistake."""
    lang = data[page.shared["lang"]]
    try:
        flat = flat_config(page, data)
        notes = actions.check_train(flat)
        run = page.manager.submit(flat["output_dir"], yaml_text(flat), data[devices] or "")
    except Exception as exc:  # noqa: BLE001 - shown in the page
        return error_html(exc, lang), gr.update()
    name = "run_queued" if run.status == "queued" else "run_started"
    return "".join(note_html(line) for line in [i18n.text(name, lang, path=run.path), *notes]), str(run.path)


def _stop(page: Page, path: str | None, lang: str) -> str:
    if not path:
        return note_html(i18n.text("no_run", lang))
    status = page.manager.stop(path)
    name = f"stop_{status}" if status in ("stopping", "killed", "cancelled") else "stop_idle"
    return note_html(i18n.text(name, lang, path=path, status=status))


def _estimate(page: Page, data: dict[Any, Any]) -> str:
    lang = data[page.shared["lang"]]
    try:
        flat = flat_config(page, data)
        if not flat.get("model_name_or_path"):
            return note_html(i18n.text("estimate_empty", lang))
        return actions.estimate({**flat, "output_dir": flat.get("output_dir") or "unused-by-estimate"})
    except Exception as exc:  # noqa: BLE001 - shown in the page
        return error_html(exc, lang)


def _model_chosen(page: Page, model: str | None, method: str | None) -> tuple[Any, Any]:
    template = MODELS.get(model or "")
    return (gr.update(value=template) if template else gr.update(),
            gr.update(value=default_output_dir(page.root, model, method)))
