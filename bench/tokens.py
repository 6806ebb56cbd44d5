"""Tokens one benchmark run feeds the model, counted independently of both frameworks.

    python3 bench/tokens.py SHARED MODEL_DIR [key=value ...]   ->  prints "PER_EPOCH EPOCHS"

Reads SHARED/bench/sft_lora.yaml with the run's overrides applied (cutoff_len, num_train_epochs,
max_samples, dataset), then runs SHARED/bench/count_tokens.py on the dataset file; with
max_samples=N it counts the first N records (both frameworks keep the first N). Counts are cached
in $BENCH_TMP/cache/tokens.json (default /tmp/bench) so repeated rows cost nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml


def settings(shared: Path, overrides: list[str]) -> dict:
    cfg = yaml.safe_load((shared / "bench" / "sft_lora.yaml").read_text()) or {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep:
            cfg[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return cfg


def data_file(shared: Path, dataset: str) -> Path:
    names = [d.strip() for d in str(dataset).split(",") if d.strip()]
    if len(names) != 1:
        raise SystemExit(f"tokens.py: one dataset expected, got {dataset!r}")
    data_dir = shared / "data" / "llamafactory"
    info = json.loads((data_dir / "dataset_info.json").read_text())
    return data_dir / info[names[0]]["file_name"]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    shared, model = Path(argv[0]), argv[1]
    cfg = settings(shared, argv[2:])
    cutoff = int(cfg.get("cutoff_len") or 2048)
    epochs = float(cfg.get("num_train_epochs") or 3.0)
    max_samples = cfg.get("max_samples")
    source = data_file(shared, cfg["dataset"])

    cache_dir = Path(os.environ.get("BENCH_TMP", "/tmp/bench")) / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_file = cache_dir / "tokens.json"
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    key = f"{os.path.abspath(model)}|{source}|{cutoff}|{max_samples}"
    if key not in cache:
        target = source
        if max_samples:
            records = json.loads(source.read_text())[: int(max_samples)]
            target = cache_dir / f"{source.stem}.first{int(max_samples)}.json"
            target.write_text(json.dumps(records, ensure_ascii=False))
        proc = subprocess.run([sys.executable, str(shared / "bench" / "count_tokens.py"), model, str(target),
                               str(cutoff)], check=False, capture_output=True, text=True)
        counted = proc.stdout.split()
        if proc.returncode != 0 or not counted or not counted[-1].isdigit():
            sys.stderr.write(proc.stderr[-2000:])
            raise SystemExit(f"tokens.py: count_tokens.py failed (rc {proc.returncode})")
        cache[key] = int(counted[-1])
        cache_file.write_text(json.dumps(cache, indent=1))
    print(cache[key], f"{epochs:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
