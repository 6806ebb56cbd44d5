"""`llamafactory-cli`-style flags: `--key value`, `--key=value` and a bare `--flag` (true) become the
`key=value` overrides every config-reading command takes, so the command LlamaBoard's "preview command"
prints runs with `llamafactory-cli` replaced by `tuneforge`.

Written here because typer (click) rejects options it does not declare, and the config keys are
hundreds (every TrainingArguments field included): the words are rewritten before typer sees them.
A command's own options (`--samples`, `--gpu-mem-gib`, `--tokens`, `--help`) and `--debug` stay options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# commands whose arguments are CONFIG [key=value ...] ("data check" is matched on its second word)
CONFIG_COMMANDS = frozenset({"train", "chat", "export", "predict", "eval", "api", "estimate", "check"})
ALWAYS_OPTIONS = frozenset({"--debug", "--help"})


def command_options(words: list[str], group: Any) -> tuple[int, frozenset[str]] | None:
    """Where the config command's own arguments start in `words` (after the program name) and the
    options it declares; None when the line runs no config command. `group`: the click group of the app."""
    for index, word in enumerate(words):
        if word.startswith("-"):
            continue
        command = getattr(group, "commands", {}).get(word)
        if command is None:
            return None
        if word in CONFIG_COMMANDS and not hasattr(command, "commands"):
            names = {name for param in command.params for name in getattr(param, "opts", [])}
            return index + 1, frozenset(n for n in names if n.startswith("--")) | ALWAYS_OPTIONS
        group = command
    return None


def rewrite(words: list[str], app: Any) -> list[str]:
    """The words after the program name, with every undeclared `--key [value]` turned into `key=value`
    (`app`: the typer app the words are for)."""
    import typer.main

    found = command_options(words, typer.main.get_command(app))
    if found is None:
        return words
    start, keep = found
    out, rest, index = list(words[:start]), words[start:], 0
    while index < len(rest):
        word = rest[index]
        name, eq, value = word[2:].partition("=")
        if not word.startswith("--") or len(word) == 2 or f"--{name}" in keep:
            out.append(word)
        elif eq:
            out.append(f"{name}={value}")
        elif index + 1 < len(rest) and not rest[index + 1].startswith("--"):
            out.append(f"{name}={rest[index + 1]}")
            index += 1
        else:  # `--do_train` alone: a switch, as HfArgumentParser reads it
            out.append(f"{name}=true")
        index += 1
    return out


def split_config(config: str | Path | None, overrides: list[str]) -> tuple[Path | None, list[str]]:
    """The config file and the overrides, when the command line may hold flags only: a first argument
    that reads `key=value` and is no existing file is an override (`tuneforge train --stage sft ...`), and the
config is the first word that is not (`tuneforge train --learning_rate 1e-4 cfg.yaml`)."""
    words = [str(w) for w in ([config] if config is not None else []) + list(overrides)]
    for index, word in enumerate(words):
        if "=" not in word or Path(word).is_file():
            return Path(word), words[:index] + words[index + 1:]
    return None, words
