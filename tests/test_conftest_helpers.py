"""The shared test helpers in conftest.py do what their tests rely on."""

from __future__ import annotations

import subprocess

import pytest

import conftest
from conftest import assert_one_error_line


def _run(stderr: str, code: int = 2) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["tuneforge"], code, "", stderr)


def test_one_error_line_passes_and_returns_the_line():
    assert assert_one_error_line(_run("error: bad.json record 3: 'output' is null\n"), "record 3", "'output'") == \
        "error: bad.json record 3: 'output' is null"
    late = _run("Loading weights: 100%\ntuneforge: data: 3 samples\nerror: lora_target x matches nothing\n")
    assert assert_one_error_line(late, "lora_target", alone=False).startswith("error: lora_target")


@pytest.mark.parametrize("result, needles, alone", [
    (_run("error: fine\n", code=1), (), True),  # wrong exit code
    (_run("Traceback (most recent call last):\nerror: x\n"), (), False),
    (_run("note\nerror: x\n"), (), True),  # not alone
    (_run("error: x\nerror: y\n"), (), False),  # two error lines
    (_run("error: x\nsomething after\n"), (), False),  # the error is not the last line
    (_run("Error: x\n"), (), True),  # "error: " exactly
    (_run("error: bad.json record 2\n"), ("record 3",), True),  # needle missing
    (_run(""), (), True),
], ids=["exit-1", "traceback", "not-alone", "two-errors", "not-last", "capital", "needle", "empty"])
def test_one_error_line_rejects(result, needles, alone):
    with pytest.raises(AssertionError):
        assert_one_error_line(result, *needles, alone=alone)


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_need_shared_fails_in_ci_and_skips_locally(ci, outcome, monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "LF_DATA", tmp_path / "missing")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="shared test data not found"):
        conftest.need_shared()
