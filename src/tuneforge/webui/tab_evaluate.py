"""The Evaluate & Predict tab: `tuneforge predict` (BLEU-4 / ROUGE on eval_dataset) and `tuneforge eval`
(multiple-choice benchmark accuracy) on the top bar's model, with the notes they print as they go."""

from __future__ import annotations

import functools
import html
from collections.abc import Iterator
from typing import Any

import gradio as gr

from tuneforge.webui import actions
from tuneforge.webui.page import Page
from tuneforge.webui.views import stream_job
from tuneforge.webui.widgets import dataset_choices


def build(page: Page) -> dict[str, Any]:
    page.add_groups("evaluate")
    with gr.Row():
        predict = page.word(gr.Button(page.text("predict"), elem_id="evaluate-predict", variant="primary"),
                            "predict", "value")
        bench = page.word(gr.Button(page.text("benchmark"), elem_id="evaluate-benchmark"), "benchmark", "value")
    result = gr.HTML(elem_id="evaluate-result")
    log = page.word(gr.Textbox(label=page.text("log"), lines=8, max_lines=8, autoscroll=True,
                               elem_id="evaluate-log"), "log")
    lang = page.shared["lang"]
    form = set(page.inputs("evaluate")) | {lang}
    for button, work, show in ((predict, actions.predict, _metrics), (bench, actions.benchmark, _table)):
        button.click(functools.partial(_run, page, work=work, show=show), inputs=form, outputs=[log, result],
                     concurrency_id="evaluate", concurrency_limit=1)
    folder = page.component("evaluate", "dataset_dir")
    folder.change(lambda d: gr.update(choices=dataset_choices(d)), inputs=folder,
                  outputs=page.component("evaluate", "eval_dataset"))
    return dict(predict=predict, benchmark=bench, result=result, log=log)


def _run(page: Page, data: dict[Any, Any], *, work: Any, show: Any) -> Iterator[tuple[str, str]]:
    """A generator function (gradio streams only those): the command's notes, then its result."""
    yield from stream_job(data[page.shared["lang"]], lambda: page.flat("evaluate", data), work, show)


def _metrics(metrics: dict[str, Any], flat: dict[str, Any], lang: str) -> str:
    """predict_results.json: BLEU-4, ROUGE-1/2/L and speed."""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.2f}</td></tr>" for k, v in metrics.items()
                   if isinstance(v, (int, float)))
    return f'<table class="tf-metrics">{rows}</table>'


def _table(text: str, flat: dict[str, Any], lang: str) -> str:
    """`tuneforge eval`'s accuracy table, as the terminal shows it."""
    return f'<pre class="tf-console">{html.escape(text)}</pre>'
