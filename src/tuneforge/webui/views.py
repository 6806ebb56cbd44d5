"""Pieces several tabs show: messages (errors in the CLI's words), a run's live view (status,
progress with ETA and speed, loss / learning-rate / grad-norm charts, the log's tail)."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from tuneforge.webui import i18n, monitor
from tuneforge.webui.actions import run_in_thread, user_error
from tuneforge.webui.runs import Run

CHARTS = ("loss", "lr", "grad_norm")
logger = logging.getLogger(__name__)


def note_html(text: str) -> str:
    return f'<div class="tf-note">{html.escape(str(text))}</div>'


def error_html(exc: BaseException, lang: str) -> str:
    """A user's mistake as the CLI words it ("error: ..."); anything else names its type (a bug: the
    traceback goes to the server's terminal)."""
    words = user_error(exc)
    if words is None:
        logger.error("web UI action failed", exc_info=exc)
        words = f"{type(exc).__name__}: {exc}"
    return f'<div class="tf-error">{html.escape(i18n.text("error", lang))} {html.escape(words)}</div>'


def frame(points: list[tuple[Any, float, str]]) -> Any:
    """Chart data; None while there is none (a chart first drawn from an empty frame fixes its colour
    scale to no series, and later lines stay invisible)."""
    import pandas as pd

    if not points:
        return None
    return pd.DataFrame(points, columns=["step", "value", "series"]).astype({"step": "int64", "value": "float64"})


def monitor_view(page: Any, tab: str) -> dict[str, Any]:
    """The live view's components (elem_ids `<tab>-run`, `<tab>-progress`, `<tab>-plot-<chart>`, `<tab>-log`)."""
    view: dict[str, Any] = {"run": gr.HTML(elem_id=f"{tab}-run"), "progress": gr.HTML(elem_id=f"{tab}-progress")}
    with gr.Row():
        for chart in CHARTS:
            view[chart] = page.word(gr.LinePlot(frame([]), x="step", y="value", color="series",
                                                label=page.text(f"chart_{chart}"), elem_id=f"{tab}-plot-{chart}",
                                                height=260), f"chart_{chart}")
    view["log"] = page.word(gr.Textbox(label=page.text("log"), lines=12, max_lines=12, autoscroll=True,
                                       elem_id=f"{tab}-log"), "log")
    return view


def view_outputs(view: dict[str, Any]) -> list[Any]:
    return [view["run"], view["progress"], *(view[c] for c in CHARTS), view["log"]]


def status_word(status: str, lang: str) -> str:
    return i18n.text(f"status_{status}", lang)


def progress_html(run: Run, bar: monitor.Progress, rows: list[dict[str, Any]], lang: str) -> str:
    parts = [f"{bar.step}/{bar.total}" if bar.total else "", f"{bar.percent:.1f}%" if bar.total else ""]
    if bar.elapsed:
        parts.append(i18n.text("elapsed", lang, time=bar.elapsed))
    if bar.remaining:
        parts.append(i18n.text("eta", lang, time=bar.remaining))
    if bar.speed:
        parts.append(bar.speed)
    loss = monitor.final_loss(rows)
    if loss is not None:
        parts.append(i18n.text("last_loss", lang, loss=f"{loss:.4f}", points=sum(1 for r in rows if "loss" in r)))
    text = " · ".join(p for p in parts if p)
    return (f'<div class="tf-progress" data-status="{run.status}" data-step="{bar.step}" data-total="{bar.total}">'
            f'<div class="tf-bar"><div class="tf-fill" style="width:{bar.percent:.1f}%"></div></div>'
            f'<span>{html.escape(text)}</span></div>')


def monitor_outputs(run: Run | None, lang: str) -> list[Any]:
    """Values for `view_outputs` showing `run` (or nothing)."""
    if run is None:
        return [note_html(i18n.text("no_run", lang)), "", *(frame([]) for _ in CHARTS), ""]
    log = monitor.tail(run.log_path)
    rows = monitor.records(run.path)
    head = (f'<div class="tf-run" data-status="{run.status}"><b>{html.escape(status_word(run.status, lang))}</b> '
            f'<code>{html.escape(str(run.path))}</code></div>')
    if run.status == "failed":  # the CLI's one line says why
        errors = [line for line in log.splitlines() if line.startswith("error: ")]
        head += f'<div class="tf-error">{html.escape(errors[-1] if errors else log.strip()[-300:])}</div>'

    charts = [frame(monitor.curve_rows(rows, chart)) for chart in CHARTS]
    return [head, progress_html(run, monitor.progress(run.path, log), rows, lang), *charts, log]


def stream_job(lang: str, make_flat: Callable[[], dict[str, Any]], work: Callable[[dict[str, Any]], Any],
               show: Callable[[Any, dict[str, Any], str], str]) -> Iterator[tuple[str, str]]:
    """Run one command's function in a thread: (log, result) pairs with its notes as they come, then
    `show(result, flat, lang)` or the error in the CLI's words."""
    try:
        flat = make_flat()
    except Exception as exc:  # noqa: BLE001 - shown in the page
        yield "", error_html(exc, lang)
        return
    working = note_html(i18n.text("working", lang))
    yield "", working
    for lines, result, error, done in run_in_thread(lambda: work(flat)):
        log = "\n".join(lines)
        if not done:
            yield log, working
        elif error is not None:
            yield log, error_html(error, lang)
        else:
            yield log, show(result, flat, lang)
