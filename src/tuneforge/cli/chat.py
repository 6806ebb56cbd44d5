"""`tuneforge chat CONFIG`: a terminal chat, or one answer per stdin line when piped."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def answer_lines(engine: Any, lines: Any, system: str | None, write: Callable[[str], None] = print) -> None:
    """Script mode: every non-empty line is a separate one-shot prompt."""
    from tuneforge.data.example import Message

    for line in lines:
        prompt = line.strip()
        if prompt:
            write(f"User: {prompt}")
            write(f"Assistant: {engine.chat([Message('user', prompt)], system)}")


def repl(engine: Any, system: str | None, read: Callable[[str], str] = input,
         write: Callable[..., None] = print) -> list:
    """Interactive mode: streamed answers, history kept; `clear` resets it, `exit` quits."""
    from tuneforge.data.example import Message

    write("Type a message; 'clear' resets the history, 'exit' quits.")
    history: list[Message] = []
    while True:
        try:
            prompt = read("\nUser: ").strip()
        except (EOFError, KeyboardInterrupt):
            write("")
            return history
        if prompt == "exit":
            return history
        if prompt == "clear":
            history = []
            write("history cleared")
            continue
        if not prompt:
            continue
        history.append(Message("user", prompt))
        write("Assistant: ", end="", flush=True)
        started, answer, first = time.perf_counter(), "", None
        for piece in engine.stream_chat(history, system):
            if first is None and piece:
                first = time.perf_counter() - started
            write(piece, end="", flush=True)
            answer += piece
        elapsed = time.perf_counter() - started
        n_tokens = len(engine.tokenizer(answer, add_special_tokens=False)["input_ids"])
        write(f"\n[first token {first or elapsed:.2f}s, {n_tokens} tokens, {n_tokens / max(elapsed, 1e-9):.1f} tok/s]")
        history.append(Message("assistant", answer.strip()))


def run_chat(config_path: Path, overrides: list[str]) -> None:
    from tuneforge.cli.config import load_config
    from tuneforge.infer.engine import create_engine

    cfg = load_config(config_path, ["do_train=false", *overrides])
    engine = create_engine(cfg.model, cfg.data, cfg.generate)
    if sys.stdin.isatty():
        repl(engine, cfg.data.default_system)
    else:
        answer_lines(engine, sys.stdin, cfg.data.default_system, write=lambda s: print(s, flush=True))
