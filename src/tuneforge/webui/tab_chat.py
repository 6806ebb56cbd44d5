"""The Chat tab: load the top bar's model (+ adapters) with `infer/engine.create_engine` (hf or vllm),
then a streamed chat with history; generation settings apply to each message."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any

import gradio as gr

from tuneforge.webui import i18n
from tuneforge.webui.page import Page
from tuneforge.webui.views import error_html, note_html

ENGINE = "chat_engine"  # page.shared key: (engine, what it loaded) or None; one loaded model per server


def build(page: Page) -> dict[str, Any]:
    page.add_groups("chat")
    with gr.Row():
        load = page.word(gr.Button(page.text("load_model"), elem_id="chat-load", variant="primary"), "load_model", "value")
        unload = page.word(gr.Button(page.text("unload_model"), elem_id="chat-unload"), "unload_model", "value")
    status = gr.HTML(note_html(page.text("no_model")), elem_id="chat-status")
    chatbot = page.word(gr.Chatbot(label=page.text("chatbot"), elem_id="chat-bot", height=360, buttons=["copy"]),
                        "chatbot")
    with gr.Row():
        prompt = page.word(gr.Textbox(label=page.text("message"), elem_id="chat-input", scale=4), "message")
        send = page.word(gr.Button(page.text("send"), elem_id="chat-send", variant="primary", scale=1), "send", "value")
        clear = page.word(gr.Button(page.text("clear"), elem_id="chat-clear", scale=1), "clear", "value")
    ui = dict(load=load, unload=unload, status=status, chatbot=chatbot, prompt=prompt, send=send, clear=clear)
    page.shared.setdefault(ENGINE, None)
    page.shared["chat_lock"] = threading.Lock()
    lang = page.shared["lang"]
    form = set(page.inputs("chat")) | {lang}
    load.click(lambda data: load_engine(page, data), inputs=form, outputs=status, concurrency_id="chat-load",
               concurrency_limit=1)
    unload.click(lambda code: _unload(page, code), inputs=lang, outputs=status)
    for event in (send.click, prompt.submit):  # a generator function (not a lambda returning one): gradio streams it
        event(functools.partial(_reply, page, ui=ui), inputs=form | {prompt, chatbot},
              outputs=[chatbot, prompt, status], concurrency_id="chat", concurrency_limit=1)
    clear.click(lambda: ([], ""), outputs=[chatbot, prompt])
    return ui


def chat_config(page: Page, data: dict[Any, Any]) -> Any:
    """The chat's config through the CLI's loader (`tuneforge chat` reads it with do_train false)."""
    from tuneforge.cli.config import load_config

    return load_config(None, base={**page.flat("chat", data), "do_train": False})


def load_engine(page: Page, data: dict[Any, Any]) -> str:
    from tuneforge.infer.engine import create_engine

    lang = data[page.shared["lang"]]
    try:
        cfg = chat_config(page, data)
        page.shared[ENGINE] = None  # drop the old model before loading the next
        engine = create_engine(cfg.model, cfg.data, cfg.generate)
    except Exception as exc:  # noqa: BLE001 - shown in the page
        return error_html(exc, lang)
    what = cfg.model.model_name_or_path + "".join(f" + {a}" for a in cfg.model.adapter_name_or_path or [])
    page.shared[ENGINE] = (engine, what)
    return note_html(i18n.text("model_loaded", lang, model=what, backend=engine.backend))


def _unload(page: Page, lang: str) -> str:
    page.shared[ENGINE] = None
    import gc

    gc.collect()
    return note_html(i18n.text("no_model", lang))


def _content(message: Any) -> str:
    """A chatbot message's text (gradio gives a string, or a list of {"type": "text", "text": ...} parts)."""
    content = message.get("content") if isinstance(message, dict) else message
    if isinstance(content, list):
        return "".join(_content(part) for part in content)
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    return "" if content is None else str(content)


def _reply(page: Page, data: dict[Any, Any], *, ui: dict[str, Any]) -> Iterator[tuple[Any, Any, Any]]:
    """Stream the answer into the history, piece by piece, as the engine produces it."""
    from tuneforge.data.example import Message

    lang, text = data[page.shared["lang"]], (data[ui["prompt"]] or "").strip()
    history = [{"role": m["role"], "content": _content(m)} for m in (data[ui["chatbot"]] or [])]
    loaded = page.shared.get(ENGINE)
    if not text or loaded is None:
        yield history, text, note_html(i18n.text("load_first", lang)) if loaded is None else gr.update()
        return
    engine, _ = loaded
    try:
        cfg = chat_config(page, data)
    except Exception as exc:  # noqa: BLE001 - shown in the page
        yield history, text, error_html(exc, lang)
        return
    engine.generation_cfg = cfg.generate  # this message's generation settings (validated by the loader)
    messages = [Message(m["role"], m["content"]) for m in history] + [Message("user", text)]
    history += [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
    with page.shared["chat_lock"]:
        for piece in engine.stream_chat(messages, cfg.data.default_system):
            history[-1]["content"] += piece
            yield history, "", gr.update()
    history[-1]["content"] = history[-1]["content"].strip()
    yield history, "", gr.update()
