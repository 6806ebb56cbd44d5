"""The Runs tab: every run under the output root (running, queued, finished, stopped), picked to
watch, stop, resume, chat with, or compare (loss curves overlaid, configs side by side)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr

from tuneforge.webui import i18n, monitor
from tuneforge.webui.page import Page
from tuneforge.webui.runs import Run, discover, read_run
from tuneforge.webui.views import error_html, frame, note_html, status_word

COLUMNS = ("col_run", "col_status", "col_stage", "col_model", "col_dataset", "col_loss", "col_duration", "col_started")
BUTTONS = ("refresh", "watch", "compare", "stop_selected", "resume", "chat_with")


def build(page: Page, watched: gr.State) -> dict[str, Any]:
    table = gr.Dataframe(headers=[page.text(c) for c in COLUMNS], interactive=False, elem_id="runs-table", wrap=True)
    picked = page.word(gr.CheckboxGroup(label=page.text("pick_runs"), elem_id="runs-pick"), "pick_runs")
    with gr.Row():
        buttons = {name: page.word(gr.Button(page.text(name), elem_id=f"runs-{name}"), name, "value")
                   for name in BUTTONS}
    message = gr.HTML(elem_id="runs-message")
    overlay = page.word(gr.LinePlot(frame([]), x="step", y="value", color="series", label=page.text("compare_loss"),
                                    elem_id="runs-compare-plot", height=300), "compare_loss")
    diff = page.word(gr.Dataframe(label=page.text("compare_config"), interactive=False, elem_id="runs-compare-diff",
                                  wrap=True), "compare_config")
    config = page.word(gr.Code(language="yaml", label=page.text("run_config"), elem_id="runs-config"), "run_config")
    picked.change(_config, inputs=picked, outputs=config, show_progress="hidden")
    ui = dict(table=table, picked=picked, message=message, overlay=overlay, diff=diff, config=config, **buttons)
    _wire(page, ui, watched)
    return ui


def _wire(page: Page, ui: dict[str, Any], watched: gr.State) -> None:
    lang = page.shared["lang"]
    ui["refresh"].click(lambda code: listing(page, code), inputs=lang, outputs=[ui["table"], ui["picked"]])
    ui["watch"].click(lambda picked, code: _watch(picked, code), inputs=[ui["picked"], lang],
                      outputs=[watched, ui["message"]])
    ui["compare"].click(lambda picked, code: compare(page, picked, code), inputs=[ui["picked"], lang],
                        outputs=[ui["overlay"], ui["diff"], ui["message"]])
    ui["stop_selected"].click(lambda picked, code: _each(page, picked, code, page.manager.stop),
                              inputs=[ui["picked"], lang], outputs=ui["message"])
    ui["resume"].click(lambda picked, code: _each(page, picked, code, lambda p: page.manager.resume(p).status),
                       inputs=[ui["picked"], lang], outputs=ui["message"])


def _name(run: Run, root: Path) -> str:
    try:
        return str(run.path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(run.path)


def _row(run: Run, root: Path, lang: str) -> list[Any]:
    cfg, rows = run.config, monitor.records(run.path)
    dataset = cfg.get("dataset")
    loss = monitor.final_loss(rows)
    started = run.info.get("started") or run.info.get("created")
    return [_name(run, root), status_word(run.status, lang), cfg.get("stage", "sft"), cfg.get("model_name_or_path", ""),
            ", ".join(dataset) if isinstance(dataset, list) else (dataset or ""),
            "" if loss is None else f"{loss:.4f}", monitor.duration(rows),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else ""]


def listing(page: Page, lang: str) -> tuple[Any, Any]:
    """The runs table and the pick list (runs submitted here outside the root included)."""
    paths = {r.path.resolve() for r in discover(page.root)} | page.manager.known
    runs = sorted((read_run(p) for p in paths), key=lambda r: r.info.get("created") or 0, reverse=True)
    import pandas as pd

    table = pd.DataFrame([_row(r, page.root, lang) for r in runs], columns=[i18n.text(c, lang) for c in COLUMNS])
    return table, gr.update(choices=[(_name(r, page.root), str(r.path)) for r in runs])


def _config(picked: list[str] | None) -> str:
    """The YAML each picked run trained with."""
    from tuneforge.webui.form import yaml_text

    return "\n".join(f"# {path}\n{yaml_text(read_run(Path(path)).config)}" for path in picked or [])


def _watch(picked: list[str] | None, lang: str) -> tuple[Any, str]:
    if not picked:
        return gr.update(), note_html(i18n.text("pick_first", lang))
    return picked[0], note_html(i18n.text("watching", lang, path=picked[0]))


def compare(page: Page, picked: list[str] | None, lang: str) -> tuple[Any, Any, str]:
    """Loss curves of the picked runs on one chart, and the config keys where they differ."""
    import pandas as pd

    if not picked or len(picked) < 2:
        return gr.update(), gr.update(), note_html(i18n.text("pick_two", lang))
    runs = [read_run(Path(p)) for p in picked]
    points = [(step, value, _name(run, page.root)) for run in runs
              for step, value, series in monitor.curve_rows(monitor.records(run.path), "loss") if series == "loss"]
    configs = [run.resolved for run in runs]
    keys = sorted({k for c in configs for k in c} - {"output_dir"})
    differ = [[key, *(str(c.get(key, "")) for c in configs)] for key in keys
              if len({str(c.get(key)) for c in configs}) > 1]
    diff = pd.DataFrame(differ, columns=[i18n.text("col_key", lang), *(_name(run, page.root) for run in runs)])
    return frame(points), diff, ""


def _each(page: Page, picked: list[str] | None, lang: str, act: Any) -> str:
    if not picked:
        return note_html(i18n.text("pick_first", lang))
    done = []
    for path in picked:
        try:
            done.append(f"{Path(path).name}: {status_word(act(path), lang)}")
        except Exception as exc:  # noqa: BLE001 - shown in the page
            return error_html(exc, lang)
    return note_html("; ".join(done))
