"""Resume where it is easy to get wrong: a finished run, a torn log line, incomplete checkpoint folders,
save_total_limit, and signals outside training. In-process (the function the CLI calls) and fast."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from reliability.harness import (differences, log_records, losses, reference,  # noqa: F401 (a fixture)
                                 steps_logged, write_config)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_run(reference: Path, tmp_path: Path, killed: bool = False) -> tuple[Path, Path]:
    """A copy of the reference run (its config pointing at the copy, resuming); `killed`: as if killed after
    step 11 (no checkpoint-12, no final files)."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    if killed:
        shutil.rmtree(out / "checkpoint-12")
        (out / "adapter_model.safetensors").unlink()
        (out / "trainer_state.json").unlink()
    return write_config(tmp_path, output_dir=str(out), resume_from_checkpoint=True, overwrite_output_dir=False), out


def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path, reference, caplog):
    from tuneforge.cli.train import run_train

    config, out = copy_run(reference, tmp_path)
    before = digest(out)
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        run_train(config, [])
    assert digest(out) == before  # no step 13, no checkpoint-13, all_results.json and the adapter untouched
    assert f"{out} holds a finished run: checkpoint-12 is its last step (12 of 12); nothing to train" in caplog.text

    # the same, when the run was killed after its last checkpoint but before its final files
    for name in ("adapter_model.safetensors", "adapter_config.json", "trainer_state.json"):
        (out / name).unlink()
    run_train(config, [])
    assert (out / "adapter_model.safetensors").read_bytes() == \
        (reference / "adapter_model.safetensors").read_bytes()
    assert "copied the model of" in caplog.text and not (out / "checkpoint-13").exists()


def test_a_torn_last_log_line_is_dropped_with_a_note(tmp_path, reference, caplog):
    from tuneforge.cli.train import run_train

    config, out = copy_run(reference, tmp_path, killed=True)
    log = (out / "trainer_log.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (out / "trainer_log.jsonl").write_text("".join(log[:10]) + log[10][:25], encoding="utf-8")  # cut in line 11
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        run_train(config, [])
    assert "trainer_log.jsonl: dropped its last line, which was cut short" in caplog.text
    assert "resuming from" in caplog.text and "checkpoint-8 (step 8)" in caplog.text
    assert differences(reference, out) == (0.0, 0.0)


def test_incomplete_checkpoints_are_named_skipped_and_left_alone(tmp_path, reference, caplog):
    from tuneforge.cli.train import run_train
    from tuneforge.config.errors import ConfigError

    config, out = copy_run(reference, tmp_path, killed=True)
    (out / "checkpoint-8" / "optimizer.pt").write_bytes(b"torn")  # size differs from the manifest
    (out / "checkpoint-10").mkdir()  # a folder another tool left half-written
    (out / "checkpoint-10" / "adapter_model.safetensors").write_bytes(b"x")
    kept = {name: digest(out / name) for name in ("checkpoint-8", "checkpoint-10")}

    with pytest.raises(ConfigError, match=r"checkpoint-8' is an incomplete checkpoint \(optimizer.pt has 4 bytes"):
        run_train(config, [f"resume_from_checkpoint={out / 'checkpoint-8'}"])
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        run_train(config, [])
    assert "checkpoint-10 is incomplete (no tuneforge_complete.json and no trainer_state.json" in caplog.text
    assert "checkpoint-8 is incomplete (optimizer.pt has 4 bytes" in caplog.text
    assert "checkpoint-4 (step 4)" in caplog.text
    assert "checkpoint-8.incomplete" in caplog.text  # step 8's save found it in the way: moved aside, untouched
    assert digest(out / "checkpoint-8.incomplete") == kept["checkpoint-8"]
    assert digest(out / "checkpoint-10") == kept["checkpoint-10"]
    assert differences(reference, out) == (0.0, 0.0)


def test_save_total_limit_keeps_the_newest_complete_checkpoint_and_ignores_incomplete_ones(tmp_path):
    from tuneforge.train.checkpoints import rotate, staged

    for step in (2, 4, 6):
        with staged(tmp_path, step) as folder:
            (folder / "optimizer.pt").write_bytes(b"0" * step)
    (tmp_path / "checkpoint-8").mkdir()  # incomplete and newer than every complete one
    assert rotate(tmp_path, 1) == [tmp_path / "checkpoint-2", tmp_path / "checkpoint-4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-6", "checkpoint-8"]
    assert rotate(tmp_path, 1, protect=str(tmp_path / "checkpoint-6")) == []


def test_a_save_that_raises_leaves_no_checkpoint_folder(tmp_path):
    from tuneforge.train.checkpoints import staged

    with pytest.raises(OSError):
        with staged(tmp_path, 5) as folder:
            (folder / "model.safetensors").write_bytes(b"half")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from tuneforge.cli.main import run

    monkeypatch.setattr(sys, "argv", ["tuneforge", *args])
    with pytest.raises(SystemExit) as exited:
        run()
    return exited.value.code, capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_loading_exits_with_one_line(tmp_path, monkeypatch, capsys, signum):
    from tuneforge.cli import train

    def prepare(run):
        os.kill(os.getpid(), signum)  # arrives while the data would load
        raise AssertionError("the signal should have ended the run")

    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(train, "prepare", prepare)
    code, err = run_cli(monkeypatch, capsys, "train", str(write_config(tmp_path)))
    name = signal.Signals(signum).name
    assert code == 128 + signum
    assert err.strip().splitlines()[-1] == f"tuneforge: stopped by {name} before training started; nothing was saved"
    assert "Traceback" not in err
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # put back


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(monkeypatch, capsys):
    from tuneforge.cli import env

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(env, "show_env", interrupted)
    code, err = run_cli(monkeypatch, capsys, "env")
    assert (code, err.strip()) == (130, "tuneforge: interrupted")


def test_every_checkpoint_lists_its_files_and_sizes(reference):
    assert sorted(losses(reference)) == list(range(1, 13))
    for step in (4, 8, 12):
        manifest = json.loads((reference / f"checkpoint-{step}" / "tuneforge_complete.json").read_text())
        files = {p.name: p.stat().st_size for p in (reference / f"checkpoint-{step}").iterdir()}
        assert manifest["step"] == step
        assert manifest["files"] == {k: v for k, v in files.items() if k != "tuneforge_complete.json"}
        assert {"optimizer.pt", "adapter_model.safetensors", "trainer_state.json"} <= set(manifest["files"])


def test_a_signal_during_an_evaluation_saves_that_step_after_it(tmp_path, monkeypatch):
    from tuneforge.cli.train import run_train
    from tuneforge.train.callbacks import StopCallback
    from tuneforge.train.stop import TrainingStopped

    sent = []

    def signal_in_eval(self, args, state, control, **kwargs):
        if not sent:
            sent.append(state.global_step)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(StopCallback, "on_prediction_step", signal_in_eval)
    config = write_config(tmp_path, val_size=8, eval_strategy="steps", eval_steps=6, per_device_eval_batch_size=2)
    with pytest.raises(TrainingStopped) as stopped:
        run_train(config, [])
    out = tmp_path / "out"
    assert sent == [6] and (stopped.value.step, stopped.value.checkpoint) == (6, str(out / "checkpoint-6"))
    assert (out / "checkpoint-6" / "tuneforge_complete.json").is_file()
    assert any(r.get("current_steps") == 6 and "eval_loss" in r for r in log_records(out))  # the eval finished
    assert steps_logged(out) == 6
