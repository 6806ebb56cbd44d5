"""`tuneforge chat CONFIG`: a terminal chat, or one answer per stdin line when piped."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


IMAGE_COMMAND = "/image "
VIDEO_COMMAND = "/video "


def image_path(prompt: str) -> Any:
    """The file of an `/image PATH` line (vision models: the picture goes with the next message), a `Video` for
    a `/video PATH` line, or None."""
    command = next((c for c in (IMAGE_COMMAND, VIDEO_COMMAND) if prompt.startswith(c)), None)
    if command is None:
        return None
    from tuneforge.config.errors import ConfigError
    from tuneforge.infer.images import Video

    path = Path(prompt[len(command):].strip().strip("'\"")).expanduser()
    if not path.is_file():
        raise ConfigError(f"{command.strip()}: {path} does not exist")
    return Video(str(path)) if command == VIDEO_COMMAND else str(path)


def described(item: Any) -> str:
    """'image PATH' or 'video PATH'."""
    return f"video {item.path}" if hasattr(item, "path") else f"image {item}"


def waiting_marks(media: list[Any], history: list) -> str:
    """The <video>/<image> placeholders of the media not yet placed in the history (they go with this message)."""
    marks = ""
    for mark, count in (("<video>", sum(hasattr(m, "path") for m in media)),
                        ("<image>", sum(not hasattr(m, "path") for m in media))):
        marks += mark * max(count - sum(m.content.count(mark) for m in history), 0)
    return marks


def with_images(images: list[str]) -> dict[str, Any]:
    return {"images": list(images)} if images else {}


def answer_lines(engine: Any, lines: Any, system: str | None, write: Callable[[str], None] = print) -> None:
    """Script mode: every non-empty line is a separate one-shot prompt; an `/image PATH` (`/video PATH`) line
    attaches that picture (video) to the next prompt."""
    from tuneforge.data.example import Message

    pending: list[str] = []
    for line in lines:
        prompt = line.strip()
        if (path := image_path(prompt)) is not None:
            pending.append(path)
            write(f"User: [{described(path)}]")
        elif prompt:
            write(f"User: {prompt}")
            write(f"Assistant: {engine.chat([Message('user', prompt)], system, **with_images(pending))}")
            pending = []


def repl(engine: Any, system: str | None, read: Callable[[str], str] = input,
         write: Callable[..., None] = print) -> list:
    """Interactive mode: streamed answers, history kept; `clear` resets it, `exit` quits, `/image PATH` adds
    a picture to the next message, `/video PATH` a video."""
    from tuneforge.config.errors import ConfigError
    from tuneforge.data.example import Message

    write("Type a message; 'clear' resets the history, 'exit' quits, '/image PATH' adds a picture, '/video PATH' a "
          "video (vision models).")
    history: list[Message] = []
    images: list[str] = []
    while True:
        try:
            prompt = read("\nUser: ").strip()
        except (EOFError, KeyboardInterrupt):
            write("")
            return history
        if prompt == "exit":
            return history
        if prompt == "clear":
            history, images = [], []
            write("history cleared")
            continue
        if prompt.startswith((IMAGE_COMMAND, VIDEO_COMMAND)):
            try:
                images.append(image_path(prompt) or "")
            except ConfigError as exc:  # a mistyped path: say so and keep the conversation
                write(f"error: {exc}")
                continue
            write(f"{described(images[-1])} goes with your next message")
            continue
        if not prompt:
            continue
        history.append(Message("user", waiting_marks(images, history) + prompt))
        write("Assistant: ", end="", flush=True)
        started, answer, first = time.perf_counter(), "", None
        for piece in engine.stream_chat(history, system, **with_images(images)):
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
