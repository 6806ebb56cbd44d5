"""Runs: the files a run leaves say what it is (queued, running, stopped, ...); Stop signals the run's
process group (SIGTERM, then SIGKILL); runs on the same devices queue; an output_dir that holds only
the UI's files is still a fresh one for `tuneforge train`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuneforge.config.errors import ConfigError
from tuneforge.config.load import load
from tuneforge.train.outputs import WEBUI_FILES, check_output_dir
from tuneforge.webui import child, runs

# stands in for `tuneforge train`: the first SIGTERM is noted in a file (as graceful stop would save a
# checkpoint) and it keeps going; SIGKILL ends it
STUBBORN = """
import pathlib, signal, sys, time
mark = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *a: mark.write_text("term"))
mark.write_text("up")
while True:
    time.sleep(0.05)
"""


def write_run(folder: Path, **info) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / runs.CONFIG_FILE).write_text("model_name_or_path: tuneforge/tiny\nstage: sft\n", encoding="utf-8")
    (folder / child.RUN_FILE).write_text(json.dumps({"command": ["tuneforge", "train", "x"], "devices": "",
                                                     "created": time.time(), "pid": None, **info}))
    return folder


def test_the_ui_file_names_are_the_ones_train_accepts():
    assert {runs.CONFIG_FILE, child.LOG_FILE, child.RUN_FILE} == WEBUI_FILES


def test_train_accepts_an_output_dir_holding_only_the_ui_files_and_refuses_another_run(tmp_path):
    out = write_run(tmp_path / "运行")
    (out / child.LOG_FILE).write_text("")
    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny", "dataset": "identity", "output_dir": str(out)})
    assert check_output_dir(cfg) is None
    (out / "trainer_log.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match="is not empty"):
        check_output_dir(cfg)


def test_status_comes_from_the_files(tmp_path):
    assert runs.read_run(write_run(tmp_path / "q")).status == "queued"
    for code, status in ((0, "finished"), (75, "stopped"), (2, "failed"), (143, "killed")):
        folder = write_run(tmp_path / str(code), pid=1)
        (folder / child.EXIT_FILE).write_text(json.dumps({"code": code}))
        assert runs.read_run(folder).status == status
    gone = write_run(tmp_path / "gone", pid=2**22 + 12345)  # no such process: it died without an exit code
    assert runs.read_run(gone).status == "killed"
    cli = tmp_path / "cli"
    cli.mkdir()
    (cli / "trainer_log.jsonl").write_text("")
    assert runs.read_run(cli).status == "unknown"
    (cli / "all_results.json").write_text("{}")
    assert runs.read_run(cli).status == "finished"


def test_discover_finds_runs_under_the_root_newest_first_and_skips_checkpoints(tmp_path):
    old = write_run(tmp_path / "tiny" / "lora" / "train_1")
    time.sleep(0.01)
    new = write_run(tmp_path / "tiny" / "lora" / "训练_2")
    (new / "checkpoint-5").mkdir()
    (new / "checkpoint-5" / "trainer_log.jsonl").write_text("")
    assert [r.path for r in runs.discover(tmp_path)] == [new, old]


def test_stop_sends_sigterm_to_the_group_then_sigkill(tmp_path):
    folder = write_run(tmp_path / "run")
    mark = tmp_path / "mark"
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN, str(mark)], start_new_session=True)
    try:
        while not mark.exists():
            time.sleep(0.05)
        info = json.loads((folder / child.RUN_FILE).read_text())
        info.update(pid=proc.pid, pgid=os.getpgid(proc.pid))
        (folder / child.RUN_FILE).write_text(json.dumps(info))
        manager = runs.RunManager(tmp_path)
        assert runs.read_run(folder).status == "running"
        assert manager.stop(folder) == "stopping"
        deadline = time.time() + 10
        while mark.read_text() != "term" and time.time() < deadline:
            time.sleep(0.05)
        assert mark.read_text() == "term" and proc.poll() is None  # graceful: the run decides when to end
        assert runs.read_run(folder).status == "stopping"
        assert manager.stop(folder) == "killed"
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert runs.read_run(folder).status == "killed"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_runs_on_the_same_devices_queue_and_a_folder_takes_one_run(tmp_path, monkeypatch):
    started = []

    def fake_start(self, run):
        started.append(run.path.name)
        info = {**run.info, "pid": os.getpid(), "proc_start": None}  # "running": this test process is alive
        (run.path / child.RUN_FILE).write_text(json.dumps(info))

    monkeypatch.setattr(runs.RunManager, "_start", fake_start)
    manager = runs.RunManager(tmp_path)
    assert manager.submit(tmp_path / "a", "stage: sft\n").status == "running"
    assert manager.submit(tmp_path / "b", "stage: sft\n").status == "queued"
    assert manager.submit(tmp_path / "c", "stage: sft\n", devices="1").status == "running"
    assert started == ["a", "c"]
    with pytest.raises(ConfigError, match="already holds a run started from the web UI"):
        manager.submit(tmp_path / "a", "stage: sft\n")
    (tmp_path / "a" / child.EXIT_FILE).write_text(json.dumps({"code": 0}))
    manager.tick()
    assert started == ["a", "c", "b"]
    assert manager.stop(write_run(tmp_path / "d")) == "cancelled"
    assert runs.read_run(tmp_path / "d").status == "cancelled"


def test_resume_queues_a_stopped_run_from_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(runs.RunManager, "_start", lambda self, run: None)
    folder = write_run(tmp_path / "r", pid=1)
    (folder / child.EXIT_FILE).write_text(json.dumps({"code": 75}))
    run = runs.RunManager(tmp_path).resume(folder)
    assert run.status == "queued"
    assert run.info["command"][-1] == "resume_from_checkpoint=true"
    with pytest.raises(ConfigError, match="only a stopped run"):
        runs.RunManager(tmp_path).resume(folder)


def test_the_group_leader_records_the_exit_code_and_logs_to_a_file(tmp_path):
    folder = write_run(tmp_path / "v")
    info = json.loads((folder / child.RUN_FILE).read_text())
    info["command"] = ["tuneforge", "version"]
    (folder / child.RUN_FILE).write_text(json.dumps(info))
    subprocess.run([sys.executable, "-m", "tuneforge.webui.child", str(folder)], check=True, timeout=120)
    assert json.loads((folder / child.EXIT_FILE).read_text())["code"] == 0
    log = (folder / child.LOG_FILE).read_text()
    assert log.startswith("$ tuneforge version\n") and "tuneforge " in log and "[exit code 0]" in log


def test_chat_with_a_run_sets_every_top_bar_key_from_it(tmp_path):
    """Runs → Chat with: one update per top-bar field (the run's quantization and rope_scaling included,
    unset ones cleared), the Chat tab selected and the model asked to load."""
    import yaml

    from tuneforge.webui.app import chat_with
    from tuneforge.webui.layout import TOP

    run = tmp_path / "qlora"
    run.mkdir()
    (run / "training_args.yaml").write_text(yaml.safe_dump({
        "model_name_or_path": "tuneforge/tiny", "finetuning_type": "lora", "template": "qwen",
        "quantization_bit": 4, "rope_scaling": "linear"}), encoding="utf-8")
    (run / "all_results.json").write_text("{}", encoding="utf-8")
    updates = chat_with(None, [str(run)], "en")
    values = dict(zip(TOP, [u.get("value") for u in updates[:len(TOP)]]))
    assert values["quantization_bit"] == "4" and values["rope_scaling"] == "linear"  # as the widgets show them
    assert values["adapter_name_or_path"] == [str(run)] and values["quantization_method"] == "bnb"  # default
    assert updates[-1] is True and len(updates) == len(TOP) + 3
