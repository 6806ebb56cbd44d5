"""`tuneforge` command line. Heavy libraries are imported inside commands, so --help and
`version` start instantly."""

from __future__ import annotations

import sys
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Fine-tune LLMs end to end from one LLaMA-Factory-compatible YAML file.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets and templates before training.")
app.add_typer(data_app, name="data")

# CONFIG may be left out when the keys come as flags (`tuneforge train --stage sft --dataset a,b ...`, see cli/flags.py)
CONFIG = typer.Argument(None, help="YAML config (LLaMA-Factory keys)", show_default=False)
OVERRIDES = typer.Argument(None, help="key=value overrides or --key value flags, e.g. learning_rate=1e-4",
                           show_default=False)


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="show tracebacks for errors")) -> None:
    """tuneforge: train, chat, check data."""


@app.command()
def version() -> None:
    """Print the tuneforge version."""
    from tuneforge import __version__

    print(f"tuneforge {__version__}")


@app.command()
def env() -> None:
    """Versions, devices and which optional extras are installed."""
    from tuneforge.cli.env import show_env

    show_env()


@app.command()
def train(config: Optional[str] = CONFIG, overrides: Optional[list[str]] = OVERRIDES) -> None:
    """Fine-tune as the YAML says (stage sft, pt, rm, dpo, kto, ppo, grpo or rloo; lora, freeze or full)."""
    from tuneforge.cli.train import run_train

    run_train(config, overrides or [])


@app.command()
def chat(config: Optional[str] = CONFIG, overrides: Optional[list[str]] = OVERRIDES) -> None:
    """Chat with a model (+ adapter). Reads one prompt per line when stdin is not a terminal."""
    from tuneforge.cli.chat import run_chat

    run_chat(config, overrides or [])


@app.command()
def export(config: Optional[str] = CONFIG, overrides: Optional[list[str]] = OVERRIDES) -> None:
    """Merge adapters into the base model and save safetensors shards to export_dir."""
    from tuneforge.cli.export import run_export

    run_export(config, overrides or [])


@app.command()
def predict(config: Optional[str] = CONFIG, overrides: Optional[list[str]] = OVERRIDES) -> None:
    """Generate answers for eval_dataset; write generated_predictions.jsonl and BLEU/ROUGE scores."""
    from tuneforge.cli.predict import run_predict

    run_predict(config, overrides or [])


@app.command("eval")
def evaluate(config: Optional[str] = CONFIG, overrides: Optional[list[str]] = OVERRIDES) -> None:
    """Multiple-choice benchmark accuracy (MMLU / C-Eval / CMMLU style task files)."""
    from tuneforge.cli.eval import run_eval

    run_eval(config, overrides or [])


@app.command()
def api(config: Optional[str] = CONFIG, overrides: Optional[list[str]] = OVERRIDES) -> None:
    """OpenAI-compatible server (API_HOST, API_PORT, API_KEY from the environment)."""
    from tuneforge.cli.api import run_api

    run_api(config, overrides or [])


@app.command()
def estimate(config: Optional[str] = CONFIG, overrides: Optional[list[str]] = OVERRIDES,
             gpu_mem_gib: Optional[float] = typer.Option(None, "--gpu-mem-gib", show_default=False,
                                                         help="the card's memory in GiB (default: the visible "
                                                              "GPU's, else 80)"),
             tokens: Optional[int] = typer.Option(None, "--tokens", show_default=False,
                                                  help="tokens per micro-batch (default: per_device_train_batch_size "
                                                       "x cutoff_len)")) -> None:
    """Predict GPU memory (params, activations, optimizer, peak) and whether checkpointing is needed; no weights load."""
    from tuneforge.cli.estimate import run_estimate

    run_estimate(config, overrides or [], gpu_mem_gib, tokens)


@app.command()
def webui(host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
          port: Optional[int] = typer.Option(None, help="port (default: the first free one from 7860)",
                                             show_default=False),
          auth: Optional[str] = typer.Option(None, help="user:password asked before the page opens",
                                             show_default=False),
          lang: str = typer.Option("en", help="language of the page: en or zh (the page remembers a switch)"),
          output_root: str = typer.Option("saves", "--output-root", help="where runs are written and found")) -> None:
    """Train, watch, compare, evaluate, chat and export in the browser (needs the webui extra)."""
    from tuneforge.cli.webui import run_webui

    run_webui(host, port, auth, lang, output_root)


@app.command()
def expand(model_name_or_path: str = typer.Option(..., "--model_name_or_path", help="the model to expand"),
           output_dir: str = typer.Option(..., "--output_dir", help="where the expanded model is written"),
           num_expand: int = typer.Option(8, "--num_expand", help="new blocks (divides the layer count)")) -> None:
    """LLaMA Pro: write a copy of the model with identity-initialised blocks added (train them with use_llama_pro)."""
    from tuneforge.cli.expand import run_expand

    run_expand(model_name_or_path, output_dir, num_expand)


@data_app.command("check")
def data_check(config: Optional[str] = CONFIG, overrides: Optional[list[str]] = OVERRIDES,
               samples: int = typer.Option(2, help="how many encoded samples to show")) -> None:
    """Load every dataset, show encoded samples and length statistics; no model weights needed."""
    from tuneforge.cli.data import run_check

    run_check(config, overrides or [], samples)


def quiet_libraries() -> None:
    """Library deprecation chatter (transformers' v6 renames we already follow) is not for users."""
    import os
    import warnings

    warnings.filterwarnings("ignore", message=".*will be removed in v6.*", category=FutureWarning)
    # torch's collectives under DeepSpeed ZeRO: a rename notice on every step of every rank
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.\w+`? is deprecated.*", category=FutureWarning)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # trl's trainers report usage unless told not to
    # bitsandbytes (imported by peft whenever it is installed), on a CPU with AVX512-BF16, fetches an optional
    # kernel from the hub and, offline, says so in two warning lines before using its own
    import logging

    for name in ("bitsandbytes.backends.cpu.ops", "kernels._internals.hf_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run() -> None:
    """Entry point: user errors print one line and exit 2 (--debug shows the traceback)."""
    debug = "--debug" in sys.argv[1:]
    if debug:  # accept --debug anywhere on the line: move it to where typer expects global options
        sys.argv = [sys.argv[0], "--debug"] + [a for a in sys.argv[1:] if a != "--debug"]
    from tuneforge.cli.flags import rewrite

    sys.argv = [sys.argv[0], *rewrite(sys.argv[1:], app)]  # llamafactory-cli's --key value flags -> key=value
    quiet_libraries()
    from tuneforge.log import to_stderr

    to_stderr()
    from tuneforge.train.stop import EXIT_STOPPED, Interrupted, TrainingStopped

    try:
        app()
    except Interrupted as exc:  # SIGINT/SIGTERM while `train` was not training (train/stop.py)
        print(f"tuneforge: {exc}", file=sys.stderr)
        raise SystemExit(exc.code) from None
    except TrainingStopped:  # `train` saved the step and printed how to resume
        raise SystemExit(EXIT_STOPPED) from None
    except SystemExit as exc:
        if _interrupted(exc):  # typer turns Ctrl-C into a silent exit 130: say it
            print("tuneforge: interrupted", file=sys.stderr)
        raise
    except KeyboardInterrupt:
        print("tuneforge: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:
        from tuneforge.config.errors import TuneforgeError

        if debug or not isinstance(exc, TuneforgeError):
            raise
        from tuneforge.log import rank_label

        print(f"error: {rank_label()}{exc}", file=sys.stderr)  # several processes: which one
        raise SystemExit(2) from None


def _interrupted(exc: BaseException) -> bool:
    """A KeyboardInterrupt behind this exception (typer raises Exit(130) from it, then SystemExit)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
