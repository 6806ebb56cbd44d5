"""tuneforge's default `train` against the plain transformers + peft script a user would write by hand.

    .venv/bin/python bench/vs_handwritten.py                     # this checkout, alternated with the script
    .venv/bin/python bench/vs_handwritten.py --before /tmp/old   # also an older checkout's src (git worktree)

Same model (tuneforge/tiny, fp32, CPU), same data (the first 400 records of the shared
alpaca_en_demo), LoRA r8 on every linear layer, batch 8, one epoch, cosine schedule, no saving.
The hand-written script is what the transformers/peft docs show: chat template, prompt masked with
-100, DataCollatorForSeq2Seq padding, Trainer. Each figure is real (non-padding) tokens per
second of training, from the run's own runtime; the runs alternate so a busy machine hurts all
alike, and the best of the rounds is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNEFORGE_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data" / "llamafactory"
RECORDS, CUTOFF = 400, 1024


def hand_written(out: str) -> float:
    """The script, in-process: returns real tokens per second."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments)

    from tuneforge.model import tiny

    path = tiny.ensure()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    rows = json.loads((DATA / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:RECORDS]

    def encode(row: dict) -> dict:
        question = row["instruction"] + ("\n" + row["input"] if row.get("input") else "")
        prompt = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        a = tok(row["output"] + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        ids = (p + a)[:CUTOFF]
        return {"input_ids": ids, "labels": ([-100] * len(p) + a)[:CUTOFF]}

    data = Dataset.from_list([encode(r) for r in rows])
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=8, num_train_epochs=1, learning_rate=1e-4,
                             lr_scheduler_type="cosine", warmup_steps=0.1, logging_steps=10, save_strategy="no",
                             report_to="none", use_cpu=True, remove_unused_columns=False, seed=42)
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      data_collator=DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, padding=True))
    runtime = trainer.train().metrics["train_runtime"]
    return sum(len(x) for x in data["input_ids"]) / runtime


def tuneforge_run(src: Path, out: str) -> float:
    """`tuneforge train` from the checkout at `src` (its src/ first on the path): real tokens per second."""
    config = {"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink", "dataset": "alpaca_en_demo",
              "dataset_dir": str(DATA), "max_samples": RECORDS, "cutoff_len": CUTOFF, "finetuning_type": "lora",
              "lora_rank": 8, "lora_target": "all", "per_device_train_batch_size": 8, "num_train_epochs": 1,
              "learning_rate": 1e-4, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1, "logging_steps": 10,
              "save_strategy": "no", "report_to": "none", "plot_loss": False, "output_dir": out,
              "overwrite_cache": True}
    import yaml

    yaml_path = Path(out) / "run.yaml"
    yaml_path.parent.mkdir(parents=True, exist_ok=True)
    yaml_path.write_text(yaml.safe_dump(config))
    out_dir = Path(out) / "run"
    env = {**os.environ, "PYTHONPATH": str(src / "src")}
    subprocess.run([sys.executable, "-m", "tuneforge", "train", str(yaml_path), f"output_dir={out_dir}"],
                   check=True, env=env, capture_output=True, text=True)
    results = json.loads((out_dir / "all_results.json").read_text())
    return results["num_input_tokens_seen"] / results["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, help="an older checkout to measure too")
    parser.add_argument("--rounds", type=int, default=2)
    opts = parser.parse_args()
    runs: dict[str, list[float]] = {"hand-written": [], "tuneforge": []}
    if opts.before:
        runs["tuneforge (before)"] = []
    for _ in range(opts.rounds):
        for name in list(runs):
            with tempfile.TemporaryDirectory() as out:
                if name == "hand-written":
                    value = float(subprocess.run([sys.executable, __file__, "--hand-run", out], check=True,
                                                 capture_output=True, text=True).stdout.strip().splitlines()[-1])
                else:
                    value = tuneforge_run(opts.before if "before" in name else REPO, out)
            runs[name].append(value)
            print(f"{name}: {value:,.0f} tok/s", flush=True)
    hand = max(runs["hand-written"])
    for name, values in runs.items():
        print(f"{name:>20}: best {max(values):8,.0f} tok/s  ratio to hand-written {max(values) / hand:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--hand-run":
        print(hand_written(sys.argv[2]))
    else:
        main()
