"""The page's buttons call the project's own functions: a mistake gets the words the CLI prints and
starts nothing; the data preview is `tuneforge data check`'s output; Preview command shows exactly
the YAML and command Start runs; predict, benchmark and chat go through the commands' code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import write_yaml
from tuneforge.config.errors import TuneforgeError
from tuneforge.webui import actions, child, runs

BASE = {"model_name_or_path": "tuneforge/tiny", "do_train": True, "stage": "sft", "finetuning_type": "lora", "template": "qwen3_nothink",
        "dataset": ["identity"], "identity_name": "小锻", "identity_author": "Lab", "cutoff_len": 128, "max_steps": 2}


def text_of(html: str) -> str:
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", "", html))


def cli_words(path: Path) -> str:
    """What `tuneforge train PATH` prints after "error: " (its own function, in this process)."""
    from tuneforge.cli.train import run_train

    with pytest.raises(TuneforgeError) as caught:
        run_train(path, [])
    return str(caught.value)


@pytest.mark.parametrize("case", ["no model", "no dataset", "dataset not in the registry", "output_dir holds a run",
                                  "wrong type"])
def test_a_mistake_gets_the_cli_words_and_starts_nothing(case, tmp_path, monkeypatch, tiny_path):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "saves" / "运行"
    flat = {**BASE, "output_dir": str(out)}
    if case == "no model":
        del flat["model_name_or_path"]
    elif case == "no dataset":
        del flat["dataset"]
    elif case == "dataset not in the registry":
        flat["dataset"] = ["nope"]
    elif case == "output_dir holds a run":
        out.mkdir(parents=True)
        (out / "trainer_log.jsonl").write_text("{}\n")
    else:
        flat["max_samples"] = "abc"
    with pytest.raises(TuneforgeError) as caught:
        actions.check_train(flat)
    yaml_path = write_yaml(tmp_path / "same.yaml", **flat)
    assert str(caught.value).replace("config:", f"{yaml_path}:") == cli_words(yaml_path)
    assert not (out / child.RUN_FILE).exists() and runs.discover(tmp_path / "saves") == [
        r for r in runs.discover(tmp_path / "saves") if r.path == out]


def test_preview_command_is_exactly_what_start_runs(tmp_path, monkeypatch):
    from tuneforge.cli.config import load_config
    from tuneforge.webui.form import yaml_text
    from tuneforge.webui.tab_train import preview_command

    monkeypatch.setattr(runs.RunManager, "_start", lambda self, run: None)
    out = tmp_path / "saves" / "tiny" / "训练"
    flat = {**BASE, "output_dir": str(out), "default_system": "你是: 小锻"}
    command, text = preview_command(flat)
    run = runs.RunManager(tmp_path / "saves").submit(out, yaml_text(flat))
    written = out / runs.CONFIG_FILE
    assert written.read_text(encoding="utf-8") == text
    assert " ".join(json.loads((out / child.RUN_FILE).read_text())["command"]) == command == f"tuneforge train {written}"
    assert run.status == "queued"
    from_file = load_config(written).model_dump(exclude={"source"})
    assert from_file == load_config(None, base=flat).model_dump(exclude={"source"})


def test_data_preview_is_data_checks_output_with_trained_spans(tmp_path, monkeypatch, tiny_path):
    monkeypatch.chdir(tmp_path)
    html = actions.data_preview({**BASE, "output_dir": "unused"}, samples=1)
    text = text_of(html)
    assert "dataset identity: 80 examples" in text and "tokens per sample: p50" in text
    assert "--- sample 0" in text and "--- sample 1" not in text
    trained = re.findall(r'<span style="color: #008000[^"]*">([^<]*)</span>', html)
    assert any("小锻" in span for span in trained), trained  # the answer is trained, whole characters
    assert not (tmp_path / "unused").exists()


def test_estimate_is_the_estimate_commands_table(tmp_path, monkeypatch, tiny_path):
    monkeypatch.chdir(tmp_path)
    text = text_of(actions.estimate({**BASE, "output_dir": "unused"}))
    assert "predicted peak" in text and "gradient checkpointing" in text


@pytest.mark.slow
def test_predict_and_benchmark_report_their_scores_and_notes(identity_adapter, tmp_path):
    flat = {**BASE, "adapter_name_or_path": [str(identity_adapter)], "eval_dataset": ["identity"], "max_samples": 4,
            "max_new_tokens": 16, "do_sample": False, "output_dir": str(tmp_path / "predict"),
            "task": "tinybench_test", "n_shot": 0, "save_dir": str(tmp_path / "bench")}
    steps = list(actions.run_in_thread(lambda: actions.predict(flat), every=0.1))
    lines, metrics, error, done = steps[-1]
    assert done and error is None, error
    assert "predict_bleu-4" in metrics and "predict_rouge-l" in metrics
    assert any(line.startswith("predict: bleu-4") for line in lines)
    table = actions.benchmark(flat)
    assert "Average" in table and (tmp_path / "bench" / "results.json").is_file()
    with pytest.raises(TuneforgeError, match="^config: 'save_dir' is required for eval"):
        actions.benchmark({**flat, "save_dir": None})  # the temporary YAML's name is not shown


def test_the_checks_pass_on_the_notes_train_would_print(tmp_path):
    notes = actions.check_train({**BASE, "output_dir": str(tmp_path / "out"), "disable_version_check": True})
    assert any(note.startswith("'disable_version_check' has no effect") for note in notes), notes
