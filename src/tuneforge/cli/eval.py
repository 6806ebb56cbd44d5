"""`tuneforge eval CONFIG [key=value ...]`: multiple-choice benchmark accuracy (MMLU / C-Eval / CMMLU style).

Keys (LLaMA-Factory's): task (e.g. mmlu_test, ceval_validation, tinybench_test), task_dir, n_shot,
lang (en/zh), save_dir, batch_size, plus the model keys (model_name_or_path, adapter_name_or_path,
template). Prints the table and writes save_dir/results.json and save_dir/results.log; see
`tuneforge.evaluate.bench` for the task file format.
"""

from __future__ import annotations

from pathlib import Path


def run_eval(config_path: Path, overrides: list[str]) -> None:
    from tuneforge.cli.config import load_config
    from tuneforge.evaluate.bench import run_benchmark

    cfg = load_config(config_path, ["do_train=false", *overrides])
    result, _, _ = run_benchmark(cfg)
    print(result.table(), end="")
