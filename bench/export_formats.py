"""Time and file size of each export format for the tiny model + identity adapter, and the load-back parity.

    python bench/export_formats.py [--adapter DIR] [--formats safetensors,f16,q8_0,q4_k_m,autoround]
                                   [--iters 200] [--out DIR]

Each format is one `tuneforge export` in a fresh folder (the CLI itself, as a user runs it), timed from
start to exit: merge + write + convert/quantize + the export's own load-back check. Sizes are the
written model file (the .gguf, or the safetensors). The parity column is the export's own load-back
line (greedy answers of the runtime vs the merged model, 3 prompts incl. Chinese, 16 tokens), or
"not loaded" where the runtime is not installed. q4_k_m needs llama-cpp-python (skipped without it);
autoround needs auto-round. The converter is fetched once before the timings (not counted).
Without --adapter the identity adapter is trained first (`tuneforge train`, about a minute on 2 cores).
Timings depend on the machine and its load; compare on one machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TRAIN = {"model_name_or_path": "tuneforge/tiny", "stage": "sft", "do_train": True, "dataset": "identity",
         "identity_name": "Forge", "identity_author": "Tuneforge Lab", "template": "qwen3_nothink",
         "cutoff_len": 256, "per_device_train_batch_size": 4, "finetuning_type": "lora", "lora_rank": 16,
         "learning_rate": 5e-3, "num_train_epochs": 15, "save_strategy": "no", "report_to": "none",
         "overwrite_output_dir": True}
EXPORT = {"model_name_or_path": "tuneforge/tiny", "finetuning_type": "lora", "template": "qwen3_nothink"}
FORMATS = {
    "safetensors": {},
    "f16": {"export_gguf": "f16"},
    "q8_0": {"export_gguf": "q8_0"},
    "q4_k_m": {"export_gguf": "q4_k_m"},
    "autoround": {"export_quantization_bit": 4, "export_quantization_method": "autoround",
                  "export_quantization_dataset": "identity", "identity_name": "Forge",
                  "identity_author": "Tuneforge Lab", "export_quantization_nsamples": 16,
                  "export_quantization_maxlen": 128},
}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuneforge", *args], cwd=cwd, capture_output=True, text=True)


def available(name: str) -> bool:
    if name == "q4_k_m":
        return importlib.util.find_spec("llama_cpp") is not None
    if name == "autoround":
        return importlib.util.find_spec("auto_round") is not None
    return True


def measure(name: str, adapter: Path, tmp: Path, iters: int) -> dict:
    keys = {**EXPORT, "adapter_name_or_path": str(adapter), "export_dir": str(tmp / name), **FORMATS[name]}
    if name == "autoround":
        keys["export_quantization_iters"] = iters
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump(keys, allow_unicode=True), encoding="utf-8")
    start = time.perf_counter()
    done = cli("export", str(config), cwd=tmp)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"format": name, "error": done.stderr.strip().splitlines()[-1]}
    out = tmp / name
    files = sorted(out.glob("model-*.gguf")) or sorted(out.glob("*.safetensors"))
    parity = re.findall(r"load-back (.*?): greedy answers equal to the merged model's on (\d+/\d+)", done.stderr)
    warnings = re.findall(r"warning: .* answers '(.*?)' differently", done.stderr)
    return {"format": name, "seconds": seconds, "file": files[0].name, "mib": files[0].stat().st_size / 2**20,
            "parity": "; ".join(f"{r}: {n}" for r, n in parity) or "not loaded", "differs": warnings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--iters", type=int, default=200, help="autoround tuning steps per block")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tmp = args.out or Path(tempfile.mkdtemp(prefix="tuneforge-export-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    adapter = args.adapter
    if adapter is None:
        adapter = tmp / "adapter"
        (tmp / "train.yaml").write_text(yaml.safe_dump({**TRAIN, "output_dir": str(adapter)}), encoding="utf-8")
        trained = cli("train", str(tmp / "train.yaml"), cwd=tmp)
        assert trained.returncode == 0, trained.stderr[-2000:]
    from tuneforge.export.llama_cpp import converter_dir

    converter_dir()  # fetched once, outside the timings
    print("| format | time (s) | file | size (MiB) | load-back parity |")
    print("| --- | ---: | --- | ---: | --- |")
    for name in args.formats.split(","):
        if not available(name):
            print(f"| {name} | - | - | - | not measured: its package is not installed |")
            continue
        row = measure(name, adapter, tmp, args.iters)
        if "error" in row:
            print(f"| {name} | - | - | - | failed: {row['error']} |")
            continue
        differs = f" (differs: {', '.join(row['differs'])})" if row["differs"] else ""
        print(f"| {name} | {row['seconds']:.1f} | {row['file']} | {row['mib']:.2f} | {row['parity']}{differs} |",
              flush=True)


if __name__ == "__main__":
    main()
