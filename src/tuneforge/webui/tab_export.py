"""The Export tab: `tuneforge export` on the top bar's model and adapters (merge, shard, dtype,
quantization), its notes as it goes, then the files written."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import gradio as gr

from tuneforge.webui import actions, i18n
from tuneforge.webui.page import Page
from tuneforge.webui.views import stream_job


def build(page: Page) -> dict[str, Any]:
    page.add_groups("export")
    button = page.word(gr.Button(page.text("export"), elem_id="export-run", variant="primary"), "export", "value")
    result = gr.HTML(elem_id="export-result")
    log = page.word(gr.Textbox(label=page.text("log"), lines=8, max_lines=8, autoscroll=True, elem_id="export-log"),
                    "log")
    lang = page.shared["lang"]
    def run(data: dict[Any, Any]) -> Iterator[tuple[str, str]]:  # a generator function: gradio streams it
        yield from stream_job(data[lang], lambda: page.flat("export", data), actions.export, _files)

    button.click(run, inputs=set(page.inputs("export")) | {lang}, outputs=[log, result], concurrency_id="export",
                 concurrency_limit=1)
    return dict(button=button, result=result, log=log)


def _files(files: list[str], flat: dict[str, Any], lang: str) -> str:
    """The CLI's summary is in the log; here the files written, by name."""
    listing = "".join(f"<li><code>{html.escape(name)}</code></li>" for name in files)
    words = html.escape(i18n.text("exported", lang, folder=flat["export_dir"], count=len(files)))
    return f'<div class="tf-note">{words}<ul class="tf-files">{listing}</ul></div>'
