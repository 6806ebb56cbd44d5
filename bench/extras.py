"""CPU wall time of each method extra vs plain LoRA / freeze / full on the same data (the tiny model).

    .venv/bin/python bench/extras.py [--steps 30] [--only galore,badam] [--out /tmp/bench-extras]

Every row is one `tuneforge train` process on the built-in identity dataset (cutoff_len 256, batch 4,
learning_rate 1e-3, constant schedule, seed 42), the same number of optimizer steps. Reported per row:
the Trainer's own train_runtime (the training loop only: no model load, no data encoding), the
process wall time and CPU time (user + system; steadier than wall time on a shared machine), the first and
last logged loss. The markdown table goes to stdout (paste it into
RESULTS.md with the machine and its load). LLaMA Pro trains a tiny model expanded by `tuneforge expand`
(4 layers), so its baseline row is freeze on that same expanded model.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

BASE = {"model_name_or_path": "tuneforge/tiny", "stage": "sft", "do_train": True, "dataset": "identity",
        "identity_name": "Forge", "identity_author": "Tuneforge Lab", "template": "qwen3_nothink",
        "cutoff_len": 256, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "lr_scheduler_type": "constant",
        "logging_steps": 1, "save_strategy": "no", "report_to": "none", "overwrite_output_dir": True, "seed": 42}
FULL = {"finetuning_type": "full"}
# name -> (baseline name or "", keys)
ROWS = {
    "lora": ("", {"finetuning_type": "lora"}),
    "loraplus (ratio 16)": ("lora", {"finetuning_type": "lora", "loraplus_lr_ratio": 16}),
    "pissa (fast SVD 16, convert)": ("lora", {"finetuning_type": "lora", "pissa_init": True, "pissa_convert": True}),
    "neftune (alpha 5)": ("lora", {"finetuning_type": "lora", "neftune_noise_alpha": 5}),
    "full": ("", FULL),
    "galore (rank 16)": ("full", {**FULL, "use_galore": True}),
    "galore layer-wise": ("full", {**FULL, "use_galore": True, "galore_layerwise": True}),
    "apollo (rank 16)": ("full", {**FULL, "use_apollo": True}),
    "apollo layer-wise": ("full", {**FULL, "use_apollo": True, "apollo_layerwise": True}),
    "badam layer (switch 10)": ("full", {**FULL, "use_badam": True, "badam_switch_interval": 10}),
    "badam ratio 0.05": ("full", {**FULL, "use_badam": True, "badam_mode": "ratio"}),
    "muon": ("full", {**FULL, "use_muon": True}),
    "adam-mini": ("full", {**FULL, "use_adam_mini": True}),
    "freeze (expanded model, last 2)": ("", {"finetuning_type": "freeze", "freeze_trainable_layers": 2, "pro": True}),
    "llama_pro (2 added blocks)": ("freeze (expanded model, last 2)",
                                   {"finetuning_type": "freeze", "freeze_trainable_layers": 2, "use_llama_pro": True,
                                    "pro": True}),
}


def tuneforge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuneforge", *args], capture_output=True, text=True)


def run_row(name: str, keys: dict, steps: int, out: Path, expanded: Path) -> dict:
    import yaml

    keys = dict(keys)
    if keys.pop("pro", False):
        keys["model_name_or_path"] = str(expanded)
    folder = out / name.split(" ")[0].replace("(", "") / str(abs(hash(name)) % 10**6)
    config = {**BASE, **keys, "max_steps": steps, "output_dir": str(folder)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    started, cpu = time.perf_counter(), _children_cpu()
    result = tuneforge("train", str(path))
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if result.returncode != 0:
        raise SystemExit(f"{name}: tuneforge train failed\n{result.stderr[-2000:]}")
    metrics = json.loads((folder / "train_results.json").read_text())
    logs = [json.loads(line) for line in (folder / "trainer_log.jsonl").read_text().splitlines() if line.strip()]
    losses = [entry["loss"] for entry in logs if "loss" in entry]
    return {"train_s": metrics["train_runtime"], "wall_s": wall, "cpu_s": cpu, "first": losses[0], "last": losses[-1]}


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes: less sensitive than wall time to other
    work on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--only", default="", help="comma-separated row name prefixes (baselines are added)")
    parser.add_argument("--out", default="/tmp/bench-extras")
    opts = parser.parse_args()
    out = Path(opts.out)
    wanted = [n for n in ROWS if not opts.only or any(n.startswith(p) for p in opts.only.split(","))]
    wanted = list(dict.fromkeys([b for n in wanted if (b := ROWS[n][0])] + wanted))
    expanded = out / "tiny-pro"
    if any(ROWS[n][1].get("pro") for n in wanted) and not (expanded / "config.json").is_file():
        result = tuneforge("expand", "--model_name_or_path", "tuneforge/tiny", "--output_dir", str(expanded),
                           "--num_expand", "2")
        if result.returncode != 0:
            raise SystemExit(result.stderr[-2000:])
    rows = {}
    for name in wanted:
        rows[name] = run_row(name, ROWS[name][1], opts.steps, out, expanded)
        print(f"{name}: {rows[name]}", file=sys.stderr)
    print(f"| method ({opts.steps} steps) | train loop s | vs baseline | process wall s | process CPU s | vs baseline "
          "| loss first -> last |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, row in rows.items():
        base = ROWS[name][0]
        ratio = f"{row['train_s'] / rows[base]['train_s']:.2f}x" if base in rows else "baseline"
        cpu_ratio = f"{row['cpu_s'] / rows[base]['cpu_s']:.2f}x" if base in rows else "baseline"
        print(f"| {name} | {row['train_s']:.1f} | {ratio} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {cpu_ratio} | "
              f"{row['first']:.2f} -> {row['last']:.2f} |")


if __name__ == "__main__":
    main()
