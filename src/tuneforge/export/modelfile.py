"""The Ollama Modelfile written beside every export, so `ollama create NAME -f Modelfile` runs the
model with the template it was trained on.

FROM the GGUF file (or `.`, the safetensors folder, which Ollama imports for the architectures it
knows), TEMPLATE in Ollama's Go-template syntax generated from the same template spec as training
(data/templates/ollama.py), SYSTEM from the default system prompt, one `PARAMETER stop` per stop
token. A `template: auto` export has no spec to write a TEMPLATE from: Ollama then takes the
template from the model's own chat_template where it recognises it, and the file says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneforge.atomic import write_atomic
from tuneforge.config.errors import ConfigError
from tuneforge.data.templates import BoundTemplate, Template
from tuneforge.data.templates.ollama import to_ollama

QUOTES = '"""'


def default_system(bound: BoundTemplate) -> str:
    if bound.default_system is not None:
        return bound.default_system
    return getattr(bound.template, "default_system", "") or ""


def check_modelfile(bound: BoundTemplate) -> None:
    """What a Modelfile cannot hold, said before anything is written."""
    if QUOTES in default_system(bound):
        raise ConfigError(f"default_system contains {QUOTES}, which ends a Modelfile's SYSTEM block; "
                          "write it without triple quotes")


def adds_bos(tokenizer: Any) -> bool:
    """Does the tokenizer put bos in front of every text by itself (what llama.cpp's add_bos_token says)?"""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def stop_words(tokenizer: Any, stop_ids: list[int]) -> list[str]:
    words = []
    for token in tokenizer.convert_ids_to_tokens(list(stop_ids)):
        if token and token not in words:
            words.append(token)
    return words


def modelfile_text(bound: BoundTemplate, source: str, stops: list[str], add_bos: bool) -> str:
    lines = [f"# Written by tuneforge export from template '{bound.name}'. Run: ollama create <name> -f Modelfile",
             f"FROM {source}"]
    if isinstance(bound.template, Template):
        template = to_ollama(bound, add_bos=add_bos)
        if QUOTES in template:  # our own templates never hold it
            raise RuntimeError(f"template '{bound.name}' contains {QUOTES}; it cannot go in a Modelfile")
        lines.append(f"TEMPLATE {QUOTES}{template}{QUOTES}")
    else:
        lines.append("# template: auto - no TEMPLATE written: Ollama uses the model's chat_template where it "
                     "recognises it; name the built-in template in the config to write one")
    system = default_system(bound)
    if system:
        lines.append(f"SYSTEM {QUOTES}{system}{QUOTES}")
    lines += [f"PARAMETER stop {json.dumps(word, ensure_ascii=False)}" for word in stops]
    return "\n".join(lines) + "\n"


def write_modelfile(folder: Path, bound: BoundTemplate, tokenizer: Any, stop_ids: list[int],
                    source: str = ".") -> Path:
    """Write `folder/Modelfile` for the model at `source` (relative to folder)."""
    path = folder / "Modelfile"
    text = modelfile_text(bound, source, stop_words(tokenizer, stop_ids), adds_bos(tokenizer))
    write_atomic(path, text)
    return path
