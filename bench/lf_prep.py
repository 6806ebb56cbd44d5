"""LLaMA-Factory's own preprocessing on the same file as `big_data.py prep`: the baseline our loader is judged by.

Same settings as `big_data.py prep`: stage sft, the project's tiny tokenizer, template qwen, cutoff_len 1024,
preprocessing_num_workers 2, an empty datasets cache (fresh HF_DATASETS_CACHE, overwrite_cache), and the same
figures: wall, CPU seconds of the process and its workers, records/s, records per CPU second, peak RSS of the
main process and of the process tree (sampled every 0.2 s by big_data.TreeSampler).

LLaMA-Factory lives in its own virtual environment (never the project's .venv), set up once with:

    python3.11 -m venv /work/lfvenv
    printf '%s\\n' torch==2.13.0 datasets==4.0.0 transformers==5.6.0 tokenizers==0.22.2 trl==0.24.0 \\
        peft==0.18.1 accelerate==1.11.0 tyro==0.8.14 dill==0.3.8 multiprocess==0.70.16 > /tmp/lf-constraints.txt
    /work/lfvenv/bin/pip install -c /tmp/lf-constraints.txt torch==2.13.0
    /work/lfvenv/bin/pip install -c /tmp/lf-constraints.txt llamafactory==0.9.5 datasets==4.0.0 \\
        transformers==5.6.0 tokenizers==0.22.2 trl==0.24.0 peft==0.18.1 accelerate==1.11.0
    /work/lfvenv/bin/pip uninstall -y torchvision torchaudio

The last line: PyPI's torchvision 0.28.0 / torchaudio 2.11.1 are CUDA builds that do not load next to the CPU
torch 2.13.0 (`operator torchvision::nms does not exist`, `Could not load ... _torchaudio.so`), and a broken
torchvision breaks `import transformers.PreTrainedModel`. Text preprocessing uses neither, but LLaMA-Factory's
mm_plugin imports torchaudio at module level, so the child runs with an empty `torchaudio` module first on its
PYTHONPATH (written here into a temporary folder).

Run (from the repository root; then ours right after it, on the same machine state):

    uptime; .venv/bin/python bench/lf_prep.py --data /tmp/big200/alpaca_200k.jsonl [--workers 2]
    uptime; .venv/bin/python bench/big_data.py prep --data /tmp/big200/alpaca_200k.jsonl --workers 2
    .venv/bin/python bench/lf_prep.py --data /tmp/big200/alpaca_200k.jsonl --ours   # like for like check

`--ours` builds our dataset once more (big_data.py prep's settings, not timed) and prints its samples and
tokens, to set beside the `SAMPLES` line of the LLaMA-Factory run.

How LLaMA-Factory is stopped after preprocessing: 0.9.5 no longer exits once `tokenized_path` is saved (it goes
on to load the model and train), so the child makes the calls `llamafactory.train.sft.workflow.run_sft` makes
before it loads the model, through LLaMA-Factory's public functions: `get_train_args` on the config dict,
`load_tokenizer`, `get_template_and_fix_tokenizer`, `get_dataset` (which, with `tokenized_path` set, saves
the tokenized dataset with `save_to_disk`; that save is timed on its own too, as ours does not write one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LF_PYTHON = Path("/work/lfvenv/bin/python")
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"
CUTOFF = 1024  # big_data.py prep's cutoff_len


def tiny_model(cache: str, python: Path) -> str:
    """The project's tiny model folder (config, safetensors, tokenizer), built into `cache` by the project."""
    out = subprocess.run([str(python), "-c", "from tuneforge.model import tiny; print(tiny.ensure())"],
                         env={**os.environ, "TUNEFORGE_CACHE": cache}, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def token_counts(dataset) -> dict:
    """Samples, input tokens and trained (label != -100) tokens of a tokenized dataset, read from its Arrow."""
    import pyarrow.compute as pc

    table = dataset.data.table if hasattr(dataset.data, "table") else dataset.data
    ids, labels = table.column("input_ids"), table.column("labels")
    lengths, flat = pc.list_value_length(ids), pc.list_flatten(labels)
    return {"samples": len(dataset), "input_tokens": int(pc.sum(lengths).as_py() or 0),
            "label_tokens": int(pc.sum(pc.not_equal(flat, -100)).as_py() or 0),
            "at_cutoff": int(pc.sum(pc.greater_equal(lengths, CUTOFF)).as_py() or 0),
            "columns": {name: str(table.schema.field(name).type) for name in table.column_names}}


def _cpu() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _lf_args(data: Path, model: str, workers: int, work: Path) -> dict:
    return {"stage": "sft", "do_train": True, "model_name_or_path": model, "dataset": "big",
            "dataset_dir": str(data.parent), "template": "qwen", "cutoff_len": CUTOFF, "finetuning_type": "lora",
            "preprocessing_num_workers": workers, "overwrite_cache": True,
            "tokenized_path": str(work / "tokenized"), "output_dir": str(work / "out"), "report_to": "none",
            "use_cpu": True}


def _lf_child(data: str, model: str, workers: str, work: str) -> None:
    """In LLaMA-Factory's venv: its preprocessing only (run_sft's calls before the model is loaded)."""
    import resource

    from datasets import DatasetDict
    from datasets.utils import logging as bars
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    bars.disable_progress_bar()  # as big_data.py prep does for ours
    model_args, data_args, training_args, _, _ = get_train_args(_lf_args(Path(data), model, int(workers),
                                                                          Path(work)))
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    records = sum(1 for _ in open(data, "rb"))  # noqa: SIM115 - counted before the clock starts
    save = DatasetDict.save_to_disk
    saved = {"s": 0.0, "maxrss_before_save_mib": 0.0}

    def timed_save(self, *args, **kwargs):  # the save alone, to set beside the total (ours writes none)
        # the save reads every page of the memory-mapped cache files, which then count in the RSS
        saved["maxrss_before_save_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.time()
        save(self, *args, **kwargs)
        saved["s"] += time.time() - start

    DatasetDict.save_to_disk = timed_save
    cpu0, wall0 = _cpu(), time.time()
    module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
    wall, used = time.time() - wall0, _cpu() - cpu0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"records": records, "wall_s": wall, "cpu_s": used, "save_s": saved["s"],
                                  "maxrss_before_save_mib": saved["maxrss_before_save_mib"],
                                  "maxrss_mib": maxrss, **token_counts(module["train_dataset"])}), flush=True)


def _ours_child(data: str) -> None:
    """In the project's venv: our dataset with big_data.py prep's settings, counted (not timed)."""
    from tuneforge.config.schema import DataConfig, ModelConfig
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.templates import template_for
    from tuneforge.model.load import load_tokenizer

    config = DataConfig(dataset=["big"], dataset_dir=str(Path(data).parent), template="qwen", cutoff_len=CUTOFF,
                        preprocessing_num_workers=2)
    tokenizer = load_tokenizer(ModelConfig(model_name_or_path="tuneforge/tiny"))
    built = build_datasets(config, template_for(config, tokenizer), "sft")
    print("RESULT " + json.dumps({**token_counts(built.train), "dropped": built.dropped}), flush=True)


def _run_child(python: Path, args: list[str], env: dict[str, str]):
    """This script's child mode under `python`; -> (its RESULT dict, the RSS sampler, wall seconds)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from big_data import TreeSampler

    start = time.time()
    proc = subprocess.Popen([str(python), __file__, *args], env=env, stdout=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    out, _ = proc.communicate()
    sampler.running = False
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"child failed (exit {proc.returncode}): {out[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):]), sampler, time.time() - start


def _stub_torchaudio(folder: Path) -> None:
    (folder / "torchaudio").mkdir(parents=True)
    (folder / "torchaudio" / "__init__.py").write_text('"""Empty: see bench/lf_prep.py."""\n', encoding="utf-8")


def measure_lf(data: Path, workers: int, lf_python: Path, project_python: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="lf-prep-"))
    try:
        model = tiny_model(str(work / "tuneforge-cache"), project_python)
        _stub_torchaudio(work / "stub")
        env = {**os.environ, "HF_DATASETS_CACHE": str(work / "hf-datasets"), "HF_HOME": str(work / "hf-home"),
               "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1",
               "PYTHONPATH": str(work / "stub")}
        result, sampler, child_wall = _run_child(lf_python, ["_lf", str(data), model, str(workers), str(work)], env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n, wall, cpu = result["records"], result["wall_s"], result["cpu_s"]
    version = subprocess.run([str(lf_python), "-m", "pip", "show", "llamafactory"], capture_output=True,
                             text=True).stdout.split("Version: ")[-1].split()[0]
    print(f"LLAMAFACTORY {version} ({lf_python})")
    print(f"PREP records {n:,} samples {result['samples']:,} workers {workers}: wall {wall:.1f} s "
          f"({n / wall:,.0f} records/s; of it save_to_disk {result['save_s']:.1f} s), CPU {cpu:.1f} s "
          f"({n / cpu:,.0f} records per CPU second), peak RSS main {sampler.main_peak / 2**30:.2f} GiB "
          f"(ru_maxrss {result['maxrss_mib'] / 1024:.2f} GiB; before save_to_disk "
          f"{result['maxrss_before_save_mib'] / 1024:.2f} GiB), process tree {sampler.tree_peak / 2**30:.2f} GiB; "
          f"child process {child_wall:.1f} s in all")
    print(f"SAMPLES {result['samples']:,} input tokens {result['input_tokens']:,} "
          f"trained tokens {result['label_tokens']:,} (at cutoff_len {result['at_cutoff']:,}); "
          f"columns {result['columns']}")


def measure_ours(data: Path, project_python: Path) -> None:
    cache = tempfile.mkdtemp(prefix="lf-prep-ours-")
    try:
        env = {**os.environ, "TUNEFORGE_CACHE": cache, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        result, _, _ = _run_child(project_python, ["_ours", str(data)], env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"OURS SAMPLES {result['samples']:,} input tokens {result['input_tokens']:,} "
          f"trained tokens {result['label_tokens']:,} (at cutoff_len {result['at_cutoff']:,}; "
          f"dropped {result['dropped']:,}); columns {result['columns']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_lf":
        return _lf_child(*sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "_ours":
        return _ours_child(*sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="an Alpaca JSONL with dataset_info.json ('big')")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lf-python", type=Path, default=LF_PYTHON)
    parser.add_argument("--project-python", type=Path, default=PROJECT_PYTHON)
    parser.add_argument("--ours", action="store_true", help="count our samples and tokens instead (not timed)")
    args = parser.parse_args()
    if args.ours:
        measure_ours(args.data.resolve(), args.project_python)
    else:
        measure_lf(args.data.resolve(), args.workers, args.lf_python, args.project_python)
    return None


if __name__ == "__main__":
    main()
