"""Disk and permissions: a read-only output_dir and too little free space are one line before any weights
load; a save that fails mid-run (full disk) is one line naming the checkpoint still intact, and the run
resumes from it."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import assert_one_error_line
from reliability.harness import Run, differences, reference, resume, write_config  # noqa: F401 (fixture)


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` made unwritable: mode 0555, or, for root (whom modes do not stop), the immutable flag."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo = ["chattr", "-i", str(folder)]
    else:
        pytest.skip("running as root without chattr: no way to make a folder read-only here")
    try:
        yield folder
    finally:
        subprocess.run(undo, check=True)


def test_read_only_output_dir_is_one_line_before_weights_load(tmp_path, tiny_path):
    config = write_config(tmp_path, output_dir=str(tmp_path / "只读 [run]"))
    with read_only(tmp_path / "只读 [run]"):
        run = Run(config)
        code = run.finish()
    result = subprocess.CompletedProcess(run.proc.args, code, "", run.stderr)
    assert_one_error_line(result, "只读 [run]", "is not writable")


def test_too_little_free_space_is_refused_before_weights_load(tmp_path, monkeypatch, tiny_path):
    from tuneforge.cli.train import run_train
    from tuneforge.config.errors import ConfigError
    from tuneforge.train import disk

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(ConfigError, match=r"not enough free space in .*: 0\.0 MiB free, one checkpoint needs about "
                                          r"[\d.]+ MiB \(adapter [\d.]+ MiB \+ optimizer state"):
        run_train(write_config(tmp_path), [])
    assert not (tmp_path / "out").exists()  # nothing written, nothing loaded


def test_a_full_disk_mid_save_is_one_line_and_the_previous_checkpoint_resumes(tmp_path, reference):
    config = write_config(tmp_path)
    out = config.parent / "out"
    run = Run(config, env={"TUNEFORGE_TEST_SAVE_FAIL": "ENOSPC:8"})  # checkpoint-4 saves, checkpoint-8 fails
    code = run.finish()
    result = subprocess.CompletedProcess(run.proc.args, code, "", run.stderr)
    line = assert_one_error_line(result, alone=False)
    assert line == f"error: no space left on device while saving {out}/checkpoint-8; {out}/checkpoint-4 is intact"
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == ["checkpoint-4"]
    assert not (out / "adapter_model.safetensors").exists()

    again = resume(config)
    assert again.finish() == 0, again.stderr[-3000:]
    assert differences(reference, out) == (0.0, 0.0)


@pytest.mark.parametrize("exc, reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
    (OSError(errno.EACCES, "Permission denied", "/x/optimizer.pt"), "Permission denied: /x/optimizer.pt"),
    (RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: "
                  "file write failed"), "no space left on device"),
    (Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on '
               'device" })'), "no space left on device"),
])
def test_a_failed_write_says_what_and_which_checkpoint_is_intact(tmp_path, monkeypatch, exc, reason):
    from tuneforge.train import disk

    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-6").mkdir()  # cut short: no manifest, no trainer_state.json
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: usage._replace(free=4096))  # the disk is full
    failure = disk.save_failure(exc, f"{tmp_path}/checkpoint-9", tmp_path)
    assert str(failure) == f"{reason} while saving {tmp_path}/checkpoint-9; {tmp_path}/checkpoint-3 is intact"


def test_other_errors_in_a_save_are_not_disguised(tmp_path):
    from tuneforge.train.disk import save_failure

    assert save_failure(ValueError("a bug"), "checkpoint-1", tmp_path) is None
    assert save_failure(RuntimeError("CUDA error: an illegal memory access"), "checkpoint-1", tmp_path) is None
