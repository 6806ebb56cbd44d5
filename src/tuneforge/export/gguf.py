"""`export_format: gguf` / `export_gguf: <type>`: the merged model as one GGUF file for llama.cpp and Ollama.

llama.cpp's converter (export/llama_cpp.py finds or fetches it; nothing is compiled) writes f32, f16,
bf16 or q8_0 straight from the merged safetensors; the other types (k-quants, q4_0 ...) are a second
step through the compiled library (llama-cpp-python's llama_model_quantize) from an f16 file. The
converter carries the exported tokenizer's chat_template and eos (the template's stop word) into the
file's metadata. Files are written under a dot-name and renamed when complete.

A BPE tokenizer whose pre-tokenizer the converter does not recognise (it knows released models by
a hash of their tokens, and a fine-tune with its own tokenizer has none) gets the pre-tokenizer read
from its tokenizer.json regex (PRE_TOKENIZERS); one that matches none is refused with the reason.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuneforge.config.errors import ConfigError
from tuneforge.export.llama_cpp import EXTRA, converter_dir, has_library
from tuneforge.log import note

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
# llama.cpp's llama_ftype names for the types its quantizer writes (llama_cpp.LLAMA_FTYPE_MOSTLY_<NAME>)
QUANTIZED_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m",
                   "q5_k_s", "q5_k_m", "q6_k")
GGUF_TYPES = CONVERTER_TYPES + QUANTIZED_TYPES
DEFAULT_TYPE = "q8_0"

# tokenizer.json Split regexes -> llama.cpp's pre-tokenizer names (llama-vocab.cpp)
PRE_TOKENIZERS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama-bpe",
}
HERE = Path(__file__).resolve().parent


def check_gguf_type(name: str) -> str:
    """The GGUF type as llama.cpp names it; refused when unknown or when it needs the missing library."""
    gguf_type = name.lower()
    if gguf_type not in GGUF_TYPES:
        guess = difflib.get_close_matches(gguf_type, GGUF_TYPES, n=1, cutoff=0.6)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        raise ConfigError(f"export_gguf '{name}' is not a GGUF type tuneforge writes{hint} "
                          f"(known: {', '.join(GGUF_TYPES)})")
    if gguf_type in QUANTIZED_TYPES and not has_library():
        raise ConfigError(f"export_gguf {gguf_type} is quantized by llama.cpp's library, which is not installed: "
                          f"{EXTRA} (builds llama-cpp-python); f16, bf16 and q8_0 need only the converter")
    return gguf_type


def pre_tokenizer(model_dir: Path) -> str:
    """llama.cpp's name for the tokenizer's BPE pre-tokenizer, read from tokenizer.json ('' when unknown)."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return ""
    pre = json.loads(path.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    for step in steps:
        regex = (step.get("pattern") or {}).get("Regex") if step.get("type") == "Split" else None
        if regex in PRE_TOKENIZERS:
            return PRE_TOKENIZERS[regex]
    if [s.get("type") for s in steps] == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    return ""


def run_converter(script: str, args: list[str], pre: str = "") -> None:
    """Run one of llama.cpp's converter scripts in a child process; its output is shown only when it fails."""
    root = converter_dir()
    command = [sys.executable, str(HERE / "gguf_convert.py"), str(root), pre, script, *args]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        if "pre-tokenizer was not recognized" in reason:
            reason += " (and its tokenizer.json regex is none tuneforge knows)"
        raise ConfigError(f"llama.cpp's {script} failed: {reason}")


def quantize(source: Path, target: Path, gguf_type: str) -> None:
    """llama_model_quantize from the compiled library: f16 GGUF -> `gguf_type`."""
    import ctypes

    import llama_cpp  # type: ignore[import-not-found]

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{gguf_type.upper()}")
    params.nthread = max(os.cpu_count() or 1, 1)
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if code != 0:
        raise RuntimeError(f"llama.cpp could not quantize {source.name} to {gguf_type} (code {code})")


def write_gguf(model_dir: Path, gguf_type: str, out_dir: Path | None = None) -> Path:
    """Convert the merged model in `model_dir` to `out_dir/model-<type>.gguf` (out_dir: model_dir)."""
    out_dir = out_dir or model_dir
    target = out_dir / f"model-{gguf_type}.gguf"
    partial = out_dir / f".{target.name}.partial"
    first = partial if gguf_type in CONVERTER_TYPES else out_dir / ".model-f16.gguf.partial"
    pre = pre_tokenizer(model_dir)
    try:
        run_converter("convert_hf_to_gguf.py", [str(model_dir), "--outfile", str(first), "--outtype",
                                                gguf_type if gguf_type in CONVERTER_TYPES else "f16"], pre)
        if first != partial:
            quantize(first, partial, gguf_type)
        os.replace(partial, target)
    finally:
        for leftover in {first, partial}:
            leftover.unlink(missing_ok=True)
    note(f"wrote {target.name} ({target.stat().st_size / 2**20:.1f} MiB) with llama.cpp's converter"
         + (" and quantizer" if gguf_type not in CONVERTER_TYPES else "") + (f"; pre-tokenizer {pre}" if pre else ""))
    return target


def write_gguf_adapter(adapter_dir: Path, base_dir: Path, target: Path) -> Path:
    """A LoRA adapter as a GGUF adapter (llama.cpp `--lora`, Ollama `ADAPTER`), f32 (it is small)."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        run_converter("convert_lora_to_gguf.py", [str(adapter_dir), "--base", str(base_dir), "--outfile",
                                                  str(partial), "--outtype", "f32"], pre_tokenizer(base_dir))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    note(f"wrote {target.name} (LoRA adapter as GGUF, {target.stat().st_size / 2**20:.1f} MiB)")
    return target


READER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from gguf import GGUFReader
reader = GGUFReader(sys.argv[2])
out = {}
for key, field in reader.fields.items():
    if key.startswith("tokenizer.ggml.") and key.endswith(("tokens", "scores", "token_type", "merges")):
        continue
    try:
        value = field.contents()
    except Exception:
        continue
    out[key] = value if isinstance(value, (str, int, float, bool, list)) else str(value)
tokens = reader.fields["tokenizer.ggml.tokens"].contents() if "tokenizer.ggml.tokens" in reader.fields else []
for key in list(out):
    if key.startswith("tokenizer.ggml.") and key.endswith("_token_id") and isinstance(out[key], int) and tokens:
        out[key.removesuffix("_id")] = tokens[out[key]]
out["tensor_types"] = sorted({t.tensor_type.name for t in reader.tensors})
print(json.dumps(out))
"""


def read_metadata(path: Path) -> dict[str, Any]:
    """The GGUF's key/values (token lists left out; each *_token_id also as its token text) and tensor
    types, read with the converter's own gguf-py in a child process."""
    done = subprocess.run([sys.executable, "-c", READER, str(converter_dir() / "gguf-py"), str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"could not read {path}: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)
