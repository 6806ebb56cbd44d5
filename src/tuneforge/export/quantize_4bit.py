"""Calibrated weight-only quantization of the merged export: `export_quantization_method: autoround | gptq`
with LLaMA-Factory's `export_quantization_bit`, `_dataset`, `_nsamples`, `_maxlen`.

autoround (Intel's auto-round, pure Python, runs on the CPU) tunes the rounding of each block on the
calibration text and writes the auto_round format (GPTQ-style packing; transformers loads it with
auto-round installed, vLLM serves it). gptq runs GPTQ through gptqmodel (its own torch pins: see
`tuneforge[gptq]`). The calibration text is the named dataset rendered through the chat template,
joined and cut into nsamples blocks of maxlen tokens, as GPTQ's reference recipe cuts C4.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.config.schema import RunConfig
from tuneforge.log import note

CALIBRATED = {"autoround": ("auto_round", "autoround"), "gptq": ("gptqmodel", "gptq")}  # module, extra
BITS = (4, 8)


def quantization_method(cfg: RunConfig) -> str:
    """The method that runs: as set, else gptq when a calibration dataset is named (LLaMA-Factory's
    meaning of export_quantization_bit), else bnb (bitsandbytes)."""
    e = cfg.export
    if e.export_quantization_method:
        return e.export_quantization_method
    return "gptq" if e.export_quantization_dataset else "bnb"


def check_calibrated(cfg: RunConfig, method: str) -> None:
    """Bits, calibration data and the package, before anything loads."""
    e = cfg.export
    if e.export_quantization_bit not in BITS:
        raise ConfigError(f"export_quantization_bit {e.export_quantization_bit} is not supported by {method} here "
                          f"(4 or 8)")
    if not e.export_quantization_dataset:
        raise ConfigError(f"export_quantization_method {method} calibrates on text: set export_quantization_dataset "
                          "(a dataset name from dataset_info.json, or a .json/.jsonl/.txt file)")
    module, extra = CALIBRATED[method]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"export_quantization_method {method} needs {module}: pip install 'tuneforge[{extra}]'")
    source = Path(e.export_quantization_dataset).expanduser()
    if source.suffix in (".json", ".jsonl", ".txt") and not source.is_file():
        raise ConfigError(f"export_quantization_dataset '{e.export_quantization_dataset}' is not a file")


def _file_texts(path: Path) -> list[str]:
    from tuneforge.textfile import parse_json, read_text

    text = read_text(path)
    if path.suffix == ".txt":
        return [text]
    rows = [parse_json(line, one_line=True) for line in text.splitlines() if line.strip()] \
        if path.suffix == ".jsonl" else parse_json(text)
    rows = rows if isinstance(rows, list) else [rows]
    out = []
    for row in rows:
        if isinstance(row, dict):
            out.append(row["text"] if isinstance(row.get("text"), str)
                       else "\n".join(v for v in row.values() if isinstance(v, str)))
        elif isinstance(row, str):
            out.append(row)
    return out


def calibration_texts(cfg: RunConfig, bound: Any) -> list[str]:
    """The dataset (or file) as the model saw it in training: rendered through the chat template."""
    from tuneforge.data.loader import load_examples

    name = cfg.export.export_quantization_dataset
    path = Path(name).expanduser()
    if path.is_file():
        return _file_texts(path)
    examples, _ = load_examples(cfg.data, [name], "sft")
    return [bound.render_text(example) for example in examples]


def calibration_blocks(texts: list[str], tokenizer: Any, nsamples: int, maxlen: int) -> list[str]:
    """All text as one token stream cut into at most nsamples blocks of maxlen tokens (one shorter
    block when the data is smaller than maxlen)."""
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(stream) >= nsamples * maxlen:
            break
    if not stream:
        raise ConfigError("export_quantization_dataset holds no text to calibrate on")
    blocks = [stream[i:i + maxlen] for i in range(0, len(stream), maxlen)][:nsamples]
    if len(blocks) > 1 and len(blocks[-1]) < maxlen:
        blocks.pop()  # a short tail would shorten every block (the quantizers take one length)
    return [tokenizer.decode(block) for block in blocks]


def group_size(model_dir: Path) -> int:
    """128 (the usual), or 32 for a model whose widths 128 does not divide (the tiny test model)."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    widths = [config.get(k) for k in ("hidden_size", "intermediate_size") if isinstance(config.get(k), int)]
    return 128 if all(w % 128 == 0 for w in widths) else 32


def quantize_calibrated(model_dir: Path, out_dir: Path, method: str, bits: int, blocks: list[str],
                        iters: int = 200) -> Path:
    """Quantize the merged model in `model_dir` into `out_dir`; returns the folder written."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    size = group_size(model_dir)
    seqlen = min(len(tokenizer(b, add_special_tokens=False)["input_ids"]) for b in blocks)
    if method == "autoround":
        from auto_round import AutoRound  # type: ignore[import-not-found]

        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        rounder = AutoRound(model, tokenizer, bits=bits, group_size=size, sym=True, dataset=blocks,
                            nsamples=len(blocks), seqlen=seqlen, iters=iters, enable_torch_compile=False,
                            device_map="cpu" if not torch.cuda.is_available() else "auto")
        _, folders = rounder.quantize_and_save(str(out_dir), format="auto_round")
        written = Path(folders[0] if isinstance(folders, (list, tuple)) else folders)
    else:
        from gptqmodel import GPTQModel, QuantizeConfig  # type: ignore[import-not-found]

        model = GPTQModel.load(str(model_dir), QuantizeConfig(bits=bits, group_size=size))
        model.quantize(blocks, batch_size=1)
        model.save(str(out_dir))
        written = out_dir
    note(f"quantized to {bits} bits with {method} (group size {size}, {len(blocks)} calibration blocks of up to "
         f"{seqlen} tokens)")
    return written
