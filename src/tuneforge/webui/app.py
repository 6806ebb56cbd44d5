"""The page: a top bar (language, model, method, adapters, template, attention), five tabs (Train,
Runs, Evaluate & Predict, Chat, Export), timers that follow the runs, and the launch."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from tuneforge.config.errors import ConfigError
from tuneforge.webui import i18n, tab_chat, tab_evaluate, tab_export, tab_runs, tab_train
from tuneforge.webui.form import schema_fields, widget_value
from tuneforge.webui.layout import TOP
from tuneforge.webui.page import Page
from tuneforge.webui.runs import ACTIVE, RunManager, discover, read_run
from tuneforge.webui.views import monitor_outputs, note_html, view_outputs
from tuneforge.webui.widgets import adapter_choices, default_output_dir

TABS = ("train", "runs", "evaluate", "chat", "export")
CSS = """
.tf-error { color: #b42318; background: #fef3f2; border: 1px solid #fda29b; padding: 8px 12px; border-radius: 6px; }
.tf-note { padding: 6px 2px; }
.tf-console { font-size: 12px; line-height: 1.35; white-space: pre-wrap; max-height: 420px; overflow: auto; }
.tf-bar { height: 10px; background: #e4e7ec; border-radius: 5px; overflow: hidden; margin: 4px 0; }
.tf-fill { height: 100%; background: #2e90fa; }
"""


def build_app(root: str | Path, lang: str = "en") -> tuple[gr.Blocks, Page]:
    page = Page(Path(root), lang, RunManager(root))
    with gr.Blocks(title="tuneforge") as demo:
        remembered = gr.BrowserState(None, storage_key="tuneforge-webui-lang", secret="tuneforge-webui-lang")
        watched = gr.State(None)
        with gr.Row(elem_id="top-bar"):
            page.shared["lang"] = page.word(gr.Radio([(name, code) for code, name in i18n.LANG_NAMES.items()],
                                                     value=lang, label=page.text("language"), elem_id="lang",
                                                     scale=0, min_width=180), "language")
            for key in TOP:
                page.add_field("top", key)
        with gr.Tabs(elem_id="tabs") as tabs:
            parts = {}
            for name in TABS:
                with page.word(gr.Tab(page.text(f"tab_{name}"), id=name, elem_id=f"tab-{name}"), f"tab_{name}"):
                    parts[name] = _build_tab(page, name, watched)
        _wire(page, demo, parts, tabs, watched, remembered)
    return demo, page


def _build_tab(page: Page, name: str, watched: gr.State) -> dict[str, Any]:
    if name == "train":
        return tab_train.build(page, watched)
    if name == "runs":
        return tab_runs.build(page, watched)
    return {"evaluate": tab_evaluate.build, "chat": tab_chat.build, "export": tab_export.build}[name](page)


def _wire(page: Page, demo: gr.Blocks, parts: dict[str, Any], tabs: gr.Tabs, watched: gr.State,
          remembered: gr.BrowserState) -> None:
    lang = page.shared["lang"]
    view, runs = parts["train"]["view"], parts["runs"]
    lang.change(lambda code: [*page.relabel(code), code], inputs=lang, outputs=[*page.relabel_targets(), remembered],
                show_progress="hidden")
    # the watched run and the run list follow the files every few seconds (the queue moves on the way)
    gr.Timer(2).tick(lambda path, code: _refresh(page, path, code), inputs=[watched, lang],
                     outputs=view_outputs(view), show_progress="hidden")
    gr.Timer(5).tick(lambda code: tab_runs.listing(page, code), inputs=lang, outputs=[runs["table"], runs["picked"]],
                     show_progress="hidden")
    watched.change(lambda path, code: monitor_outputs(read_run(Path(path)) if path else None, code),
                   inputs=[watched, lang], outputs=view_outputs(view))
    demo.load(lambda stored: _on_load(page, stored), inputs=remembered, show_progress="hidden",
              outputs=[lang, watched, page.component("top", "adapter_name_or_path"),
                       page.component("train", "output_dir"), page.component("evaluate", "output_dir"),
                       page.component("evaluate", "save_dir")])
    top = [page.component("top", k) for k in TOP]
    chat = parts["chat"]
    # one click: the run's model and adapter go to the top bar, the Chat tab opens and the model loads
    requested = gr.State(False)
    runs["chat_with"].click(lambda picked, code: chat_with(page, picked, code), inputs=[runs["picked"], lang],
                            outputs=[*top, runs["message"], tabs, requested]).success(
        lambda data: tab_chat.load_engine(page, data) if data[requested] else gr.update(),
        inputs=set(page.inputs("chat")) | {lang, requested}, outputs=chat["status"], concurrency_id="chat-load")
    model, method = page.component("top", "model_name_or_path"), page.component("top", "finetuning_type")
    gr.on([model.change, method.change], lambda m, f: [default_output_dir(page.root, m, f, "eval")] * 2,
          inputs=[model, method], outputs=[page.component("evaluate", k) for k in ("output_dir", "save_dir")],
          show_progress="hidden")
    adapters = page.component("top", "adapter_name_or_path")
    adapters.focus(lambda: gr.update(choices=adapter_choices(page.root)), outputs=adapters, show_progress="hidden")


def _refresh(page: Page, path: str | None, lang: str) -> list[Any]:
    page.manager.tick()
    return monitor_outputs(read_run(Path(path)) if path else None, lang)


def _on_load(page: Page, stored: Any) -> list[Any]:
    """A new page: the remembered language, the newest active run (a reload or a restarted server finds it
    again), fresh adapter choices and output folders."""
    lang = stored if stored in i18n.LANGS else page.lang
    runs = discover(page.root)
    active = [r for r in runs if r.status in ACTIVE]
    newest = (active or runs or [None])[0]
    evaluation = default_output_dir(page.root, None, None, "eval")
    return [lang, str(newest.path) if newest else None, gr.update(choices=adapter_choices(page.root)),
            default_output_dir(page.root, None, None), evaluation, evaluation]


def chat_with(page: Page, picked: list[str] | None, lang: str) -> list[Any]:
    """Put a run's model, method, template and adapter in the top bar and open the Chat tab (the model
    then loads: the last value asks for it)."""
    if not picked:
        return [gr.update() for _ in TOP] + [note_html(i18n.text("pick_first", lang)), gr.update(), False]
    run = read_run(Path(picked[0]))
    cfg = run.config
    lora = cfg.get("finetuning_type", "lora") == "lora"
    specs = schema_fields()  # every top-bar key as the run had it (quantization, rope_scaling...), else its default
    values = {k: widget_value(specs[k], cfg.get(k, specs[k].default)) for k in TOP}
    values.update({"model_name_or_path": cfg.get("model_name_or_path") if lora else str(run.path),
                   "finetuning_type": cfg.get("finetuning_type", "lora"), "template": cfg.get("template"),
                   "adapter_name_or_path": [str(run.path)] if lora else [],
                   "flash_attn": cfg.get("flash_attn", "auto"), "enable_liger_kernel": "auto"})
    return ([gr.update(value=values[k]) for k in TOP]
            + [note_html(i18n.text("chat_ready", lang, path=run.path)), gr.Tabs(selected="chat"), True])


def warm_up() -> None:
    """Import the libraries the first estimate, preview or chat needs while the user looks at the page."""
    def work() -> None:
        import transformers  # noqa: F401

        from tuneforge.cli import config, data, estimate  # noqa: F401

    threading.Thread(target=work, daemon=True).start()


def launch(root: str | Path, host: str, port: int | None, auth: tuple[str, str] | None, lang: str) -> None:
    from tuneforge.log import note

    demo, page = build_app(root, lang)
    demo.queue(default_concurrency_limit=4)
    try:
        demo.launch(server_name=host, server_port=port, auth=auth, share=False, inbrowser=False, quiet=True,
                    prevent_thread_lock=True, css=CSS, ssr_mode=False, mcp_server=False, pwa=False,
                    enable_monitoring=False, footer_links=["settings"])
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise ConfigError(f"cannot listen on {host}:{port or '7860-7959'}: {exc}") from None
    note(f"web UI at {demo.local_url} (runs under {Path(root).resolve()}; Ctrl+C to quit)")
    warm_up()
    ticker = threading.Thread(target=_tick_forever, args=(page,), daemon=True)
    ticker.start()
    demo.block_thread()


def _tick_forever(page: Page) -> None:
    """Queued runs start even with no page open."""
    while True:
        time.sleep(3)
        try:
            page.manager.tick()
        except Exception:  # noqa: BLE001 - a bad folder under the root must not end the queue
            pass
