"""`tuneforge chat CONFIG`: a terminal chat, or one answer per stdin line when piped."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def run_chat(config_path: Path, overrides: list[str]) -> None:
    from tuneforge.config.load import load
    from tuneforge.data.example import Message
    from tuneforge.infer.engine import create_engine

    cfg, _ = load(config_path, ["do_train=false", *overrides])
    engine = create_engine(cfg)
    system = cfg.data.default_system
    if not sys.stdin.isatty():
        for line in sys.stdin:
            prompt = line.strip()
            if not prompt:
                continue
            print(f"User: {prompt}")
            print(f"Assistant: {engine.chat([Message('user', prompt)], system)}", flush=True)
        return
    print("Type a message; 'clear' resets the history, 'exit' quits.")
    history: list[Message] = []
    while True:
        try:
            prompt = input("\nUser: ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if prompt == "exit":
            return
        if prompt == "clear":
            history = []
            print("history cleared")
            continue
        if not prompt:
            continue
        history.append(Message("user", prompt))
        print("Assistant: ", end="", flush=True)
        started, answer, first = time.perf_counter(), "", None
        for piece in engine.stream_chat(history, system):
            if first is None and piece:
                first = time.perf_counter() - started
            print(piece, end="", flush=True)
            answer += piece
        elapsed = time.perf_counter() - started
        n_tokens = len(engine.tokenizer(answer, add_special_tokens=False)["input_ids"])
        print(f"\n[first token {first or elapsed:.2f}s, {n_tokens} tokens, {n_tokens / max(elapsed, 1e-9):.1f} tok/s]")
        history.append(Message("assistant", answer.strip()))
