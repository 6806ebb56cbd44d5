"""Bad configs and bad records, through the real CLI: each one gets ONE clear line on stderr
(`error: <file> record N: ...` naming file, record and key), exit code 2, no traceback, and
nothing written to output_dir. `--debug` shows the traceback instead.

Every case in CASES is a separate `python -m tuneforge` process (~4 s of CPU each, nearly all
imports), so the module runs them all at once in a small thread pool and each test checks its
own result. MORE_CASES go through the same entry point function inside this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import assert_one_error_line, run_cli, write_yaml

BASE = dict(model_name_or_path="tuneforge/tiny", do_train=True, template="qwen3_nothink", cutoff_len=64, max_steps=2,
            save_strategy="no", plot_loss=False, dataset="good")
GOOD = [{"instruction": "Say hi", "input": "", "output": "Hi there"},
        {"instruction": "Add 1 and 2", "output": "3"},
        {"instruction": "Name a colour", "output": "Blue"}]
CONVO = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]


def alpaca(*bad: dict) -> list[dict]:
    """Good alpaca records with the bad ones after them (so the bad one is record 3...)."""
    return GOOD + list(bad)


def sharegpt(*bad: list) -> list[dict]:
    return [{"conversations": CONVO}] + [{"conversations": turns} for turns in bad]


@dataclass
class Case:
    name: str
    needles: tuple[str, ...]  # must all appear in the error line
    config: dict[str, Any] = field(default_factory=dict)  # over BASE; None removes a key
    data: Any = None  # records (JSON-dumped) or raw text of the "bad" dataset's file
    file: str = "bad.json"
    formatting: str = "alpaca"
    entry: dict[str, Any] = field(default_factory=dict)  # more keys for the "bad" dataset_info entry
    info: str | None = None  # raw dataset_info.json text, replacing the generated one
    args: tuple[str, ...] = ()  # extra command-line arguments after the config
    command: tuple[str, ...] = ("train",)
    prepare: Callable[[Path], None] | None = None  # makes extra files in the case's folder
    alone: bool = True  # the error line is all of stderr (False: found after the data and model loaded)


CASES = [
    # -- datasets and files -------------------------------------------------------------
    Case("missing_data_file", ("nope.json", "does not exist", "'bad'", "dataset_info.json"),
         config={"dataset": "bad"}, info=json.dumps({"bad": {"file_name": "nope.json"}})),
    Case("unknown_dataset", ("'goood'", "dataset_info.json", "did you mean 'good'"), config={"dataset": "goood"}),
    Case("dataset_info_invalid_json", ("dataset_info.json", "not valid JSON", "line 2"),
         info='{"good": {"file_name": "good.json"},\n "bad": {"file_name": "bad.json",}}'),
    Case("malformed_json", ("bad.json", "not valid JSON", "line 3"),
         data='[\n{"instruction": "a", "output": "b"},\n{"instruction": "c" "output": "d"}\n]'),
    Case("malformed_jsonl", ("bad.jsonl line 3", "not valid JSON"), file="bad.jsonl",
         data='{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n{"instruction": \n'),
    Case("empty_file", ("bad.json", "'bad'", "no records"), data=[]),
    Case("all_records_bad_skipped", ("bad.json", "'bad'", "all 2 were bad", "record 0: 'output' is missing"),
         config={"bad_records": "skip"}, data=[{"instruction": "a"}, {"instruction": "b", "output": None}]),
    # -- alpaca records -----------------------------------------------------------------
    Case("alpaca_missing_output", ("bad.json record 3", "'output' is missing"),
         data=alpaca({"instruction": "no answer"})),
    Case("alpaca_null_output", ("bad.json record 3", "'output' is null", "alpaca needs instruction and output"),
         data=alpaca({"instruction": "null answer", "output": None})),
    Case("alpaca_empty_output", ("bad.json record 3", "'output' is empty"),
         data=alpaca({"instruction": "empty answer", "output": "  "})),
    Case("alpaca_instruction_number", ("bad.json record 3", "'instruction' must be a string", "int"),
         data=alpaca({"instruction": 42, "output": "forty-two"})),
    Case("alpaca_history_not_pairs", ("bad.json record 3", "'history'", "turn 0", "pair"),
         data=alpaca({"instruction": "q", "output": "a", "history": [["only one"]]}),
         entry={"columns": {"history": "history"}}),
    # -- sharegpt records ---------------------------------------------------------------
    Case("sharegpt_gpt_first", ("bad.json record 1", "'conversations'", "message 0", "'gpt'", "out of order"),
         formatting="sharegpt", data=sharegpt([CONVO[1], CONVO[0]])),
    Case("sharegpt_ends_on_human", ("bad.json record 1", "'conversations'", "ends with message 2 ('human')",
                                    "must end with a 'gpt'"),
         formatting="sharegpt", data=sharegpt(CONVO + [{"from": "human", "value": "And?"}])),
    Case("sharegpt_unknown_role", ("bad.json record 1", "'conversations'", "message 1", "unknown role 'bot'"),
         formatting="sharegpt", data=sharegpt([CONVO[0], {"from": "bot", "value": "Hello"}])),
    Case("sharegpt_null_value", ("bad.json record 1", "'conversations'", "message 1", "'value'", "null"),
         formatting="sharegpt", data=sharegpt([CONVO[0], {"from": "gpt", "value": None}])),
    # -- config -------------------------------------------------------------------------
    Case("unknown_template", ("train.yaml", "'template'", "unknown template 'qwen3_nothnk'",
                              "did you mean 'qwen3_nothink'"), config={"template": "qwen3_nothnk"}),
    Case("cutoff_len_too_small", ("cutoff_len 1", "too small", "good", "raise cutoff_len"), config={"cutoff_len": 1}),
    Case("model_path_missing", ("model_name_or_path", "./no/such/model", "does not exist"),
         config={"model_name_or_path": "./no/such/model"}),
    Case("misspelt_key", ("train.yaml", "unknown key 'learning_rat'", "did you mean 'learning_rate'"),
         config={"learning_rat": 1e-4}),
    Case("lf_key_unsupported", ("train.yaml", "'shift_attn'", "not support"), config={"shift_attn": True}),
    Case("unsupported_stage", ("train.yaml", "no stage 'simpo'", "pref_loss: simpo"), config={"stage": "simpo"}),
    Case("negative_lora_rank", ("train.yaml", "'lora_rank'", "greater than 0", "-1"), config={"lora_rank": -1}),
    Case("finetuning_type_qlora", ("train.yaml", "'finetuning_type'", "'qlora'", "lora"),
         config={"finetuning_type": "qlora"}),
    Case("lora_target_missing", ("lora_target", "nonexistent_proj"), config={"lora_target": "nonexistent_proj"},
         alone=False),
    Case("resume_without_checkpoint", ("resume_from_checkpoint", "checkpoint"),
         config={"resume_from_checkpoint": True}),
    Case("override_not_key_value", ("override 'learning_rate'", "key=value"), args=("learning_rate",)),
    Case("yaml_syntax_error", ("train.yaml", "line 4", "not valid YAML", "starts at line 3"),
         prepare=lambda d: (d / "train.yaml").write_text(
             "model_name_or_path: tuneforge/tiny\ntemplate: qwen3_nothink\ndataset: [good\ncutoff_len: 64\n"
             f"output_dir: {d / 'out'}\n")),
    # a whole checkpoint there is continued (LLaMA-Factory's habit: tests/compat/test_lf_outputs.py); a torn one is not
    Case("output_dir_not_empty", ("output_dir", "not empty", "incomplete: checkpoint-5", "overwrite_output_dir"),
         prepare=lambda d: [(d / "out" / "checkpoint-5").mkdir(parents=True),
                            (d / "out" / "keep.txt").write_text("precious"),
                            (d / "out" / "checkpoint-5" / "optimizer.pt").write_text("torn")]),
    # -- data check shares the messages ---------------------------------------------------
    Case("data_check_bad_record", ("bad.json record 3", "'output' is null"), command=("data", "check"),
         data=alpaca({"instruction": "null answer", "output": None})),
]

# More mistakes, checked through the same entry point (`tuneforge.cli.main.run`) inside this
# process: each costs milliseconds instead of a fresh interpreter importing torch.
MORE_CASES = [
    Case("quantization_bit_3", ("train.yaml", "'quantization_bit'", "bnb", "4 or 8", "not 3"),
         config={"quantization_bit": 3}),
    Case("quantization_full", ("train.yaml", "quantization_bit needs finetuning_type: lora", "full"),
         config={"quantization_bit": 4, "finetuning_type": "full"}),
    Case("streaming_without_max_steps", ("train.yaml", "streaming: true needs max_steps"),
         config={"streaming": True, "max_steps": None}),
    Case("interleave_probs_count", ("train.yaml", "interleave_probs has 1 values for 2 datasets"),
         config={"dataset": "good,identity", "mix_strategy": "interleave_under", "interleave_probs": "1.0"}),
    Case("num_samples_zero", ("dataset_info.json", "'bad'", "'num_samples'", "0"),
         config={"dataset": "bad"}, info=json.dumps({"bad": {"file_name": "good.json", "num_samples": 0}})),
    Case("alpaca_history_not_list", ("bad.json record 3", "'history'", "list"),
         data=alpaca({"instruction": "q", "output": "a", "history": "earlier chat"}),
         entry={"columns": {"history": "history"}}),
    Case("alpaca_record_not_object", ("bad.jsonl line 2", "object"), file="bad.jsonl",
         data='{"instruction": "a", "output": "b"}\n["a", "b"]\n'),
    Case("sharegpt_system_then_gpt", ("bad.json record 1", "'conversations'", "message 1 is 'gpt'", "out of order"),
         formatting="sharegpt", data=sharegpt([{"from": "system", "value": "Be brief."}, CONVO[1], CONVO[0]])),
    Case("sharegpt_system_in_middle", ("bad.json record 1", "message 2", "'system'", "only the first message"),
         formatting="sharegpt", data=sharegpt(CONVO + [{"from": "system", "value": "Be brief."}] + CONVO)),
    Case("model_folder_not_a_model", ("model_name_or_path", "./emptymodel", "config.json"),
         config={"model_name_or_path": "./emptymodel"}, prepare=lambda d: (d / "emptymodel").mkdir()),
    Case("wrong_value_type", ("train.yaml", "'learning_rate'", "'fast'"), config={"learning_rate": "fast"}),
    Case("lr_scheduler_typo", ("train.yaml", "'lr_scheduler_type'", "'cosinee'", "did you mean 'cosine'"),
         config={"lr_scheduler_type": "cosinee"}),
    Case("optim_unknown", ("train.yaml", "'optim'", "'adamw_foo'", "adamw_torch"), config={"optim": "adamw_foo"}),
    Case("report_to_typo", ("train.yaml", "'report_to'", "'wandbb'", "did you mean 'wandb'"),
         config={"report_to": "wandbb"}),
    Case("resume_from_missing_folder", ("resume_from_checkpoint", "no/such/checkpoint-9"),
         config={"resume_from_checkpoint": "no/such/checkpoint-9"}),
    Case("override_unknown_key", ("unknown key 'lora_rnak'", "did you mean 'lora_rank'"), args=("lora_rnak=4",)),
    Case("eval_strategy_unknown", ("train.yaml", "'eval_strategy'", "'sometimes'"),
         config={"eval_strategy": "sometimes", "val_size": 1}),
    Case("output_dir_is_a_file", ("output_dir", "is a file"), prepare=lambda d: (d / "out").write_text("x")),
    Case("config_file_missing", ("train.yaml", "does not exist"), prepare=lambda d: (d / "train.yaml").unlink()),
    Case("data_not_utf8", ("bad.json", "UTF-8"), data=b'[{"instruction": "caf\xe9", "output": "x"}]'),
    Case("csv_missing_column", ("bad.csv line 2", "'output' is missing"), file="bad.csv",
         data="instruction,answer\nhi,there\n"),
    Case("dataset_info_bad_formatting", ("dataset_info.json", "dataset 'bad'", "'formatting'", "'chat'"),
         formatting="chat", data=GOOD),
]


def setup_case(case: Case, folder: Path) -> tuple[list[str], Path]:
    """Write the case's data and config into `folder`; return the CLI arguments and output_dir."""
    data_dir = folder / "data"
    data_dir.mkdir()
    (data_dir / "good.json").write_text(json.dumps(GOOD), encoding="utf-8")
    info: dict[str, Any] = {"good": {"file_name": "good.json"}}
    if case.data is not None:
        raw = case.data if isinstance(case.data, (str, bytes)) else json.dumps(case.data, indent=1)
        (data_dir / case.file).write_bytes(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
        info["bad"] = {"file_name": case.file, "formatting": case.formatting, **case.entry}
    (data_dir / "dataset_info.json").write_text(case.info or json.dumps(info, indent=1), encoding="utf-8")
    out = folder / "out"
    config = {**BASE, "dataset_dir": str(data_dir), "output_dir": str(out)}
    if case.data is not None:
        config["dataset"] = "bad"
    config.update(case.config)
    cfg_path = folder / "train.yaml"
    write_yaml(cfg_path, **{k: v for k, v in config.items() if v is not None})
    if case.prepare:
        case.prepare(folder)
    return [*case.command, str(cfg_path), *case.args], out


def snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(path.rglob("*"))}


@dataclass
class Run:
    result: subprocess.CompletedProcess
    out: Path
    before: dict[str, bytes] | None


@pytest.fixture(scope="module")
def runs(tiny_path, tmp_path_factory) -> dict[str, Run]:
    """Run every CLI case (plus the skip and --debug runs) concurrently; tiny model built first."""
    jobs: dict[str, tuple[list[str], Path, Path]] = {}
    for case in CASES:
        folder = tmp_path_factory.mktemp(case.name)
        args, out = setup_case(case, folder)
        jobs[case.name] = (args, out, folder)
    # bad_records: skip drops the two bad records and trains on the three good ones
    folder = tmp_path_factory.mktemp("skip")
    args, out = setup_case(Case("skip", (), config={"bad_records": "skip"},
                                data=alpaca({"instruction": "x", "output": None}, {"instruction": 7, "output": "y"})),
                           folder)
    jobs["skip"] = (args, out, folder)
    # --debug shows the traceback of the same kind of bad record
    folder = tmp_path_factory.mktemp("debug")
    args, out = setup_case(Case("debug", (), data=alpaca({"instruction": "x", "output": None})), folder)
    jobs["debug"] = (["--debug", *args], out, folder)

    befores = {name: snapshot(out) for name, (_, out, _) in jobs.items()}
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) + 1) as pool:
        futures = {name: pool.submit(run_cli, *args, cwd=folder, timeout=300)
                   for name, (args, out, folder) in jobs.items()}
        return {name: Run(future.result(), jobs[name][1], befores[name]) for name, future in futures.items()}


def run_in_process(args: list[str], cwd: Path, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """`tuneforge ARGS` through the console-script entry point, in this process."""
    from tuneforge.cli.main import run

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["tuneforge", *args])
    code = 0
    try:
        run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception:  # what the interpreter would print for an escaped exception
        traceback.print_exc()
        code = 1
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def assert_one_clear_line(run: Run, case: Case) -> None:
    assert_one_error_line(run.result, *case.needles, alone=case.alone)
    assert snapshot(run.out) == run.before, f"output_dir changed\n--- stderr ---\n{run.result.stderr}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_line(runs, case: Case):
    assert_one_clear_line(runs[case.name], case)


@pytest.mark.parametrize("case", MORE_CASES, ids=[c.name for c in MORE_CASES])
def test_more_bad_input_in_process(tiny_path, tmp_path, monkeypatch, capsys, case: Case):
    args, out = setup_case(case, tmp_path)
    before = snapshot(out)
    assert_one_clear_line(Run(run_in_process(args, tmp_path, monkeypatch, capsys), out, before), case)


def test_output_dir_not_empty_left_untouched(runs):
    run = runs["output_dir_not_empty"]
    assert run.before is not None and run.before["keep.txt"] == b"precious"
    assert "checkpoint-5/optimizer.pt" in run.before
    assert snapshot(run.out) == run.before


def test_bad_records_skip_trains_and_reports(runs):
    run = runs["skip"]
    assert run.result.returncode == 0, run.result.stderr
    assert "skipped 2 bad records" in run.result.stderr
    assert "bad.json record 3: 'output' is null" in run.result.stderr  # the first skipped one is shown
    assert "bad: 3" in run.result.stderr  # three good records kept
    assert (run.out / "adapter_model.safetensors").is_file()


def test_debug_shows_traceback(runs):
    run = runs["debug"]
    assert run.result.returncode != 0
    assert "Traceback" in run.result.stderr
    assert "'output' is null" in run.result.stderr
    assert not run.out.exists()


def test_case_names_are_unique():
    names = [c.name for c in CASES + MORE_CASES]
    assert len(names) == len(set(names)) and len(CASES) >= 20
