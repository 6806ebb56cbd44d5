"""`tuneforge estimate CONFIG [key=value ...]`: predicted GPU memory of a training run.

Reads the config and the model's config.json only (never the weights, nor the data), and says
whether gradient checkpointing is needed on the card: the same decision `train` makes when the
config leaves it open (`disable_gradient_checkpointing` unset).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def run_estimate(config_path: Path, overrides: list[str], gpu_mem_gib: float | None = None,
                 tokens: int | None = None, console: Console = console) -> None:
    """Print the estimate on `console` (the web UI passes a recording one). `tokens`: tokens of one micro-batch
    (default: the worst case, per_device_train_batch_size x cutoff_len, which packed rows reach)."""
    from tuneforge.cli.config import load_config
    from tuneforge.config.errors import ConfigError
    from tuneforge.config.stages import facts
    from tuneforge.model.memory import GIB
    from tuneforge.model.load import load_model_config
    from tuneforge.model.memory.settings import card_bytes, memory_budget, run_settings

    # estimate writes nothing: a config without output_dir (given on the train command line) is fine
    cfg = load_config(config_path, overrides, base={"output_dir": "unused-by-estimate"})
    if tokens is not None and tokens <= 0:
        raise ConfigError(f"--tokens must be positive, got {tokens}")
    config = load_model_config(cfg.model)
    run = run_settings(cfg, config, tokens)
    card, card_source = card_bytes(gpu_mem_gib)
    budget = memory_budget(gpu_mem_gib)
    off, on, chosen, reason = _decide(cfg, config, run, budget.usable)
    _print_header(cfg, run, tokens, console)
    _print_table(off, on, console)
    console.print(f"card memory: {card / GIB:.1f} GiB ({card_source}); {budget.describe()}")
    console.print(f"gradient checkpointing: [bold]{reason}[/]")
    for text in chosen.notes:
        console.print(f"[dim]note: {text}[/]")
    stage = cfg.method.stage
    if not facts(stage).padding_free:
        console.print(f"[dim]note: stage {stage}: only the policy's forward and backward are modelled "
                      "(no reference or reward model, no generation)[/]")


def _decide(cfg: Any, config: Any, run: dict[str, Any], card: int) -> tuple[Any, Any, Any, str]:
    """Both estimates, the one `train` would use and why (the config's setting, or the usable memory `card`)."""
    from tuneforge.model.memory import GIB, choose_checkpointing, estimate_memory
    from tuneforge.model.memory.settings import estimate_args
    from tuneforge.train.arguments import wants_checkpointing

    common = estimate_args(run)
    off = estimate_memory(config, cfg.method, checkpointing=False, **common)
    on = estimate_memory(config, cfg.method, checkpointing=True, **common)
    forced = wants_checkpointing(cfg)
    if forced is None:
        use, reason = choose_checkpointing(config, cfg.method, card_bytes=card, **common)
        return off, on, on if use else off, reason
    chosen = on if forced else off
    return off, on, chosen, (f"{'on' if forced else 'off'} (set in the config; predicted {chosen.peak_gib:.1f} GiB, "
                             f"{card / GIB:.1f} GiB usable)")


def _print_header(cfg: Any, run: dict[str, Any], tokens: int | None, console: Console = console) -> None:
    from tuneforge.config.stages import facts

    stage = cfg.method.stage
    sequences = facts(stage).sequences
    loss = "Liger fused linear+CE" if run["liger"] else "chunked linear+CE" if run["fused_loss"] else "full logits"
    where = ("--tokens" if tokens else f"per_device_train_batch_size {cfg.train.per_device_train_batch_size} x "
             f"cutoff_len {cfg.data.cutoff_len}{f' x {sequences}' if sequences > 1 else ''}")
    console.print(f"[bold]{escape(cfg.model.model_name_or_path)}[/]: {cfg.method.finetuning_type}, stage {stage}, "
                  f"{run['tokens']:,} tokens per micro-batch ({where}), bf16/fp16, "
                  f"attention {run['attention']}, loss {loss}, gradient accumulation {run['accumulation']}")


def _print_table(off: Any, on: Any, console: Console = console) -> None:
    table = Table(show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("checkpointing off", justify="right")
    table.add_column("checkpointing on", justify="right")
    rows = [("params", f"{off.params:,}", f"{on.params:,}"),
            ("trainable params", f"{off.trainable_params:,} ({100 * off.trainable_params / off.params:.3f}%)",
             f"{on.trainable_params:,}")]
    for label, attr in (("weights", "weights_bytes"), ("grads", "grads_bytes"),
                        ("grads kept across micro-batches", "resident_grads_bytes"), ("optimizer states", "optimizer_bytes"),
                        ("activations", "activation_bytes"), ("loss buffer", "loss_bytes"),
                        ("working memory (busiest layer)", "working_bytes"), ("overhead (CUDA + allocator)", "overhead_bytes")):
        rows.append((label, _gib(getattr(off, attr)), _gib(getattr(on, attr))))
    rows.append(("predicted peak", f"[bold]{_gib(off.peak_bytes)}[/]", f"[bold]{_gib(on.peak_bytes)}[/]"))
    for row in rows:
        table.add_row(*row)
    console.print(table)
