"""What the buttons do, through the project's own functions (no gradio here, no second implementation):
the config is checked by `cli/config.load_config` and `cli/train.setup` (the CLI's words), the data
preview is `tuneforge data check`'s output, the estimate is `tuneforge estimate`'s, prediction,
benchmark and export call the commands' functions, chat uses `infer/engine.create_engine`."""

from __future__ import annotations

import io
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneforge.config.errors import TuneforgeError
from tuneforge.config.schema import RunConfig
from tuneforge.log import LOGGER
from tuneforge.webui.form import yaml_text


class _Lines(logging.Handler):
    """Collects the `tuneforge` notes one thread emits (each button runs in its own thread)."""

    def __init__(self, lines: list[str], thread: int):
        super().__init__()
        self.lines, self.thread = lines, thread

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(record.getMessage())


@contextmanager
def notes_into(lines: list[str]) -> Iterator[list[str]]:
    handler = _Lines(lines, threading.get_ident())
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


@contextmanager
def yaml_file(flat: dict[str, Any], name: str = "webui_config.yaml") -> Iterator[Path]:
    """The flat config as a YAML file the commands' functions can read. The temporary file's name means
    nothing to the user: a message that names it says `config` instead, as the form's own checks do."""
    with tempfile.TemporaryDirectory(prefix="tuneforge-webui-") as folder:
        path = Path(folder) / name
        path.write_text(yaml_text(flat), encoding="utf-8")
        try:
            yield path
        except TuneforgeError as exc:
            exc.args = (str(exc).replace(str(path), "config"),)
            raise


def check_train(flat: dict[str, Any]) -> list[str]:
    """Everything `tuneforge train` checks before it loads anything, in its words: the config, the
    stage's settings, the output folder, and the dataset names as the data layer resolves them.
    Returns the notes those steps print (a setting changed for this machine, a key with no effect)."""
    from tuneforge.cli.config import load_config
    from tuneforge.cli.train import setup
    from tuneforge.data.registry import resolve

    with notes_into([]) as lines:
        cfg = load_config(None, base=flat)
        setup(cfg)
        resolve(list(cfg.data.dataset or []) + list(cfg.data.eval_dataset or []), cfg.data.dataset_dir)
    return lines


def console_html(render: Callable[[Any], None]) -> str:
    """Run a command's printing function on a recording console; its output as HTML (styles kept:
    trained tokens green, masked ones grey)."""
    from rich.console import Console

    console = Console(record=True, file=io.StringIO(), width=120, highlight=False, soft_wrap=True)
    render(console)
    return console.export_html(inline_styles=True, code_format='<pre class="tf-console">{code}</pre>')


def data_preview(flat: dict[str, Any], samples: int = 2) -> str:
    """`tuneforge data check` on this config: counts, token lengths, the first samples as the template
    renders them with the trained spans highlighted."""
    from tuneforge.cli.data import run_check

    with yaml_file(flat) as path:
        return console_html(lambda console: run_check(path, [], samples, console=console))


def estimate(flat: dict[str, Any]) -> str:
    """`tuneforge estimate` on this config (the data need not be chosen yet)."""
    from tuneforge.cli.estimate import run_estimate

    with yaml_file(flat) as path:
        return console_html(lambda console: run_estimate(path, ["do_train=false"], console=console))


def run_in_thread(work: Callable[[], Any], every: float = 0.5) -> Iterator[tuple[list[str], Any, BaseException | None, bool]]:
    """Run `work` in a thread; yield (notes so far, result, error, finished) while it runs and once at the end."""
    lines: list[str] = []
    out: dict[str, Any] = {}

    def target() -> None:
        with notes_into(lines):
            try:
                out["result"] = work()
            except BaseException as exc:  # noqa: BLE001 - shown in the page
                out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(every)
        if thread.is_alive():
            yield list(lines), None, None, False
    yield list(lines), out.get("result"), out.get("error"), True


def predict(flat: dict[str, Any]) -> dict[str, Any]:
    """`tuneforge predict`: generated_predictions.jsonl and BLEU-4/ROUGE in output_dir."""
    import json

    from tuneforge.cli.predict import run_predict

    with yaml_file(flat) as path:
        run_predict(path, [])
    results = Path(flat["output_dir"]) / "predict_results.json"
    return json.loads(results.read_text(encoding="utf-8"))


def benchmark(flat: dict[str, Any]) -> str:
    """`tuneforge eval`: the accuracy table."""
    from tuneforge.cli.config import load_config
    from tuneforge.evaluate.bench import run_benchmark

    with yaml_file(flat) as path:
        result, _, _ = run_benchmark(load_config(path, ["do_train=false"]))
    return result.table()


def export(flat: dict[str, Any]) -> list[str]:
    """`tuneforge export`; the files written to export_dir."""
    from tuneforge.cli.export import run_export

    with yaml_file(flat) as path:
        run_export(path, [])
    out = Path(flat["export_dir"])
    return sorted(p.name for p in out.iterdir() if p.is_file())


def user_error(exc: BaseException) -> str | None:
    """The one line the CLI prints for a user's mistake (None: a bug, shown with its type)."""
    return str(exc) if isinstance(exc, TuneforgeError) else None
