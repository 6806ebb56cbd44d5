"""Datasets larger than memory: preprocessing speed and memory, cached start, streaming memory.

    python bench/big_data.py gen --records 1000000 --out /tmp/big/alpaca_1m.jsonl
    python bench/big_data.py prep --data /tmp/big/alpaca_1m.jsonl [--workers 2]
    python bench/big_data.py start --data /tmp/big/alpaca_1m.jsonl [--packing]
    python bench/big_data.py stream --data /tmp/big/alpaca_1m.jsonl [--steps 300] [--batch 4] [--buffer N]
    python bench/big_data.py floor --data /tmp/big/alpaca_1m.jsonl [--records 20000]

Which tuneforge is measured is the one PYTHONPATH selects: put another checkout's `src` first to
measure that revision with the same venv (e.g. a `git worktree` of the base commit).

- gen: an Alpaca JSONL of N records drawn from LLaMA-Factory's alpaca_en_demo / alpaca_zh_demo (70/30,
  from ../shared/data/llamafactory), each instruction numbered so no two records are equal, 30% of the
  outputs followed by a second one (about 1 KB a record: 1M records ~ 1 GB).
- prep: `data.dataset.build_datasets` for stage sft (tiny tokenizer, template qwen, cutoff_len 1024) with
  an empty cache, in a child process: wall time, CPU seconds of the process and its workers, records/s,
  records per CPU second, peak RSS of the main process and of the whole process tree (sampled every 0.2 s).
- start: `tuneforge train` (tiny model, LoRA, max_steps 1) twice: the first run fills the cache, the
  second is timed from process start to the first training step, and its data step alone (--packing:
  then the same with `packing: true`, whose rows are cached too).
- stream: `tuneforge train` with `streaming: true` for --steps steps: the process's RSS at steps
  10, 25%, 50%, 75% and the last (constant memory means these stay flat).
- floor: the tokenizer alone, on the first --records records rendered by the same template (one Rust
  `encode_batch` per 256, one thread): the records per CPU second no preprocessing with this tokenizer can beat.
Timings depend on the machine and its load; compare revisions on one machine, alternating runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNEFORGE_SHARED", REPO.parent / "shared"))
TRAIN = {"model_name_or_path": "tuneforge/tiny", "stage": "sft", "do_train": True, "template": "qwen",
         "cutoff_len": 1024, "finetuning_type": "lora", "per_device_train_batch_size": 4, "max_steps": 1,
         "learning_rate": 1e-4, "save_strategy": "no", "report_to": "none", "use_cpu": True,
         "logging_steps": 1, "overwrite_output_dir": True, "plot_loss": False}


def generate(records: int, out: Path, seed: int = 0) -> None:
    folder = SHARED / "data" / "llamafactory"
    en = json.loads((folder / "alpaca_en_demo.json").read_text(encoding="utf-8"))
    zh = json.loads((folder / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    rng = random.Random(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for index in range(records):
            record = dict(rng.choice(zh if rng.random() < 0.3 else en))
            record["instruction"] = f"{record['instruction']} (#{index})"
            if rng.random() < 0.3:
                record["output"] = record["output"] + "\n\n" + rng.choice(en)["output"]
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out.parent / "dataset_info.json").write_text(json.dumps({"big": {"file_name": out.name}}), encoding="utf-8")


class TreeSampler(threading.Thread):
    """Peak RSS of a process and of it with all its descendants, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.main_peak = self.tree_peak = 0
        self.running = True

    def run(self) -> None:
        import psutil

        while self.running:
            try:
                main = self.process.memory_info().rss
                tree = main + sum(c.memory_info().rss for c in self.process.children(recursive=True))
            except psutil.Error:
                break
            self.main_peak, self.tree_peak = max(self.main_peak, main), max(self.tree_peak, tree)
            time.sleep(self.interval)


def _child(args: list[str], env: dict[str, str]) -> tuple[dict, TreeSampler, float]:
    """Run this script's child mode; -> (its JSON result line, the RSS sampler, wall seconds)."""
    start = time.time()
    proc = subprocess.Popen([sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    out, _ = proc.communicate()
    sampler.running = False
    wall = time.time() - start
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"child failed (exit {proc.returncode}): {out[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):]), sampler, wall


def _env(cache: str) -> dict[str, str]:
    return {**os.environ, "TUNEFORGE_CACHE": cache, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _revision() -> str:
    import tuneforge

    src = Path(tuneforge.__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
    except OSError:
        rev = "?"
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."], capture_output=True,
                           text=True).stdout.strip()
    return f"{src} @ {rev}{' + uncommitted changes' if dirty else ''}"


def _tiny_model(cache: str) -> None:
    """Build the tiny model into `cache` before anything is timed."""
    subprocess.run([sys.executable, "-c", "from tuneforge.model import tiny; tiny.ensure()"], env=_env(cache),
                   check=True, capture_output=True)


def prep(data: Path, workers: int | None) -> None:
    cache = tempfile.mkdtemp(prefix="big-data-cache-")
    _tiny_model(cache)
    args = ["_prep", str(data)] + ([str(workers)] if workers else [])
    result, sampler, wall = _child(args, _env(cache))
    n = result["records"]
    cpu = result["cpu_s"]
    print(f"REV {_revision()}")
    print(f"PREP records {n:,} samples {result['samples']:,} workers {workers or 'auto'}: wall {result['wall_s']:.1f} s "
          f"({n / result['wall_s']:,.0f} records/s), CPU {cpu:.1f} s ({n / cpu:,.0f} records per CPU second), "
          f"peak RSS main {sampler.main_peak / 2**30:.2f} GiB (ru_maxrss {result['maxrss_mib'] / 1024:.2f} GiB), "
          f"process tree {sampler.tree_peak / 2**30:.2f} GiB; child process {wall:.1f} s in all")
    import shutil

    shutil.rmtree(cache, ignore_errors=True)


def _prep_child(data: str, workers: str | None = None) -> None:
    import resource

    from datasets.utils import logging as bars

    from tuneforge.config.schema import DataConfig, ModelConfig
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.templates import template_for
    from tuneforge.model.load import load_tokenizer

    bars.disable_progress_bar()
    tokenizer = load_tokenizer(ModelConfig(model_name_or_path="tuneforge/tiny"))
    config = DataConfig(dataset=["big"], dataset_dir=str(Path(data).parent), template="qwen", cutoff_len=1024,
                        preprocessing_num_workers=int(workers) if workers else None)
    template = template_for(config, tokenizer)
    records = sum(1 for _ in open(data, "rb"))  # noqa: SIM115 - counted before the clock starts

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    cpu0, wall0 = cpu(), time.time()
    built = build_datasets(config, template, "sft")
    wall, used = time.time() - wall0, cpu() - cpu0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"records": records, "samples": len(built.train), "wall_s": wall, "cpu_s": used,
                                  "maxrss_mib": maxrss}))


def floor(data: Path, records: int) -> None:
    cache = tempfile.mkdtemp(prefix="big-data-cache-")
    _tiny_model(cache)
    result, _sampler, _wall = _child(["_floor", str(data), str(records)],
                                     {**_env(cache), "TOKENIZERS_PARALLELISM": "false"})
    print(f"FLOOR tokenizer alone on {result['records']:,} records: CPU {result['cpu_s']:.2f} s "
          f"({result['records'] / result['cpu_s']:,.0f} records per CPU second)")


def _floor_child(data: str, records: str) -> None:
    import itertools

    from tuneforge.config.schema import DataConfig, ModelConfig
    from tuneforge.data.formats.alpaca import convert
    from tuneforge.data.registry import resolve
    from tuneforge.data.templates import template_for
    from tuneforge.model.load import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig(model_name_or_path="tuneforge/tiny"))
    config = DataConfig(dataset=["big"], dataset_dir=str(Path(data).parent), template="qwen", cutoff_len=1024)
    template = template_for(config, tokenizer)
    spec = resolve(["big"], config.dataset_dir)[0]
    texts = []
    with open(data, encoding="utf-8") as handle:
        for index, line in enumerate(itertools.islice(handle, int(records))):
            example = convert(json.loads(line), spec, "sft", f"record {index}")
            texts.append("".join(p for turn in template.render(example) for p in (turn.prompt, turn.answer, turn.suffix)))
    backend = tokenizer.backend_tokenizer
    start = time.process_time()
    for at in range(0, len(texts), 256):
        backend.encode_batch(texts[at:at + 256], add_special_tokens=False)
    print("RESULT " + json.dumps({"records": len(texts), "cpu_s": time.process_time() - start}))


def _train_config(folder: Path, data: Path, **extra) -> Path:
    import yaml

    cfg = {**TRAIN, "dataset": "big", "dataset_dir": str(data.parent), "output_dir": str(folder / "out"), **extra}
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def start(data: Path, packing: bool) -> None:
    """Without packing (and then, with --packing, with it, on the same cache): a run that fills the cache,
    then a cached run."""
    cache = tempfile.mkdtemp(prefix="big-data-cache-")
    folder = Path(tempfile.mkdtemp(prefix="big-data-start-"))
    _tiny_model(cache)
    print(f"REV {_revision()}")
    for packed in (False, True) if packing else (False,):
        config = _train_config(folder, data, **({"packing": True} if packed else {}))
        first, _, _ = _child(["_start", str(config)], _env(cache))
        second, sampler, _ = _child(["_start", str(config)], _env(cache))
        print(f"START packing {packed}: first run (fills the cache) {first['first_step_s']:.1f} s to the first step "
              f"(data step {first['data_s']:.1f} s); cached run {second['first_step_s']:.2f} s from process start "
              f"to the first step (imports {second['imports_s']:.2f} s, data step {second['data_s']:.2f} s, "
              f"packing {second.get('pack_s', 0):.2f} s; run chain: config {second['config_s']:.2f} s, launcher check {second['launched_s']:.2f} s, setup {second['setup_s']:.2f} s, prepare "
              f"{second['prepare_s']:.2f} s, model build {second['build_s']:.2f} s, then the Trainer to its first step), "
              f"peak RSS {sampler.main_peak / 2**30:.2f} GiB", flush=True)
    import shutil

    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


def _process_start() -> float:
    import psutil

    return psutil.Process().create_time()


def _time_calls(module, name: str, key: str, timings: dict[str, float]) -> None:
    """Replace module.name by a wrapper adding its wall time to timings[key] (the CLI imports it lazily)."""
    original = getattr(module, name)

    def timed(*args, **kwargs):
        begin = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            timings[key] = timings.get(key, 0.0) + time.time() - begin

    setattr(module, name, timed)


def _start_child(config: str) -> None:
    import transformers

    imports = time.time() - _process_start()
    import tuneforge.cli.train as train_module
    import tuneforge.data.dataset as dataset_module
    from tuneforge.cli.train import run_train

    timings: dict[str, float] = {"imports_s": imports}
    import tuneforge.data.packing as packing_module

    _time_calls(dataset_module, "build_datasets", "data_s", timings)
    _time_calls(packing_module, "pack_dataset", "pack_s", timings)
    # the run chain's steps (cli/train.py): setup imports the stages (transformers' Trainer, trl, peft),
    # prepare holds the data step, build loads the model
    for step in ("launched", "setup", "prepare", "build"):
        _time_calls(train_module, step, f"{step}_s", timings)
    import tuneforge.cli.config as config_module

    _time_calls(config_module, "load_config", "config_s", timings)

    def first_step(self, *args, **kwargs):
        timings["first_step_s"] = time.time() - _process_start()
        print("RESULT " + json.dumps(timings), flush=True)
        os._exit(0)

    transformers.Trainer.training_step = first_step
    run_train(Path(config), [])


def stream(data: Path, steps: int, batch: int, buffer: int | None) -> None:
    cache = tempfile.mkdtemp(prefix="big-data-cache-")
    folder = Path(tempfile.mkdtemp(prefix="big-data-stream-"))
    _tiny_model(cache)
    config = _train_config(folder, data, streaming=True, max_steps=steps, per_device_train_batch_size=batch,
                           **({"buffer_size": buffer} if buffer else {}))
    result, sampler, wall = _child(["_stream", str(config)], _env(cache))
    print(f"REV {_revision()}")
    marks = ", ".join(f"step {step} {rss / 2**30:.3f} GiB" for step, rss in result["rss"])
    print(f"STREAM {steps} steps x batch {batch} (shuffle buffer {buffer or 'default'}) in {wall:.0f} s "
          f"({steps * batch / result['train_s']:.1f} samples/s): first step after "
          f"{result['first_step_s']:.1f} s; RSS {marks}; peak {sampler.main_peak / 2**30:.3f} GiB")
    import shutil

    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


def _stream_child(config: str) -> None:
    import psutil
    import transformers

    from tuneforge.cli.train import run_train

    import yaml

    steps = yaml.safe_load(Path(config).read_text(encoding="utf-8"))["max_steps"]
    marks = sorted({10, steps // 4, steps // 2, 3 * steps // 4, steps})
    process = psutil.Process()
    seen: dict[str, object] = {"step": 0, "rss": []}
    original = transformers.Trainer.training_step

    def training_step(self, *args, **kwargs):
        seen["step"] = int(seen["step"]) + 1
        if seen["step"] == 1:
            seen["first"] = time.time()
            seen["first_step_s"] = time.time() - _process_start()
        if seen["step"] in marks:
            seen["rss"].append((seen["step"], process.memory_info().rss))  # type: ignore[union-attr]
        return original(self, *args, **kwargs)

    transformers.Trainer.training_step = training_step
    run_train(Path(config), [])
    print("RESULT " + json.dumps({"rss": seen["rss"], "first_step_s": seen["first_step_s"],
                                  "train_s": time.time() - float(seen["first"])}))  # type: ignore[arg-type]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):  # child modes
        {"_prep": _prep_child, "_start": _start_child, "_stream": _stream_child,
         "_floor": _floor_child}[sys.argv[1]](*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["gen", "prep", "start", "stream", "floor"])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--records", type=int, help="gen: records to write (1,000,000); floor: records read (20,000)")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--packing", action="store_true")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=TRAIN["per_device_train_batch_size"], help="stream: batch size")
    parser.add_argument("--buffer", type=int, help="stream: buffer_size (records in the shuffle buffer)")
    args = parser.parse_args()
    if args.mode == "gen":
        generate(args.records or 1_000_000, args.out)
    elif args.mode == "floor":
        floor(args.data, args.records or 20_000)
    elif args.mode == "prep":
        prep(args.data, args.workers)
    elif args.mode == "start":
        start(args.data, args.packing)
    else:
        stream(args.data, args.steps, args.batch, args.buffer)


if __name__ == "__main__":
    main()
