"""The command line as users meet it: light start, env report, data check.
(How fast `tuneforge version` and `--help` start is measured by bench/cli_latency.py, not asserted here.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, run_cli

HEAVY = ("torch", "transformers", "datasets", "trl", "peft", "accelerate")
# runs the console-script entry point on ARGS, then lists the heavy libraries it imported
PROBE = """
import sys
args = sys.argv[1:]
sys.argv = ["tuneforge", *args]
from tuneforge.cli.main import run
try:
    run()
except SystemExit as exc:
    assert not exc.code, exc.code
print("heavy:", sorted(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["version"], ["--help"]], ids=["version", "help"])
def test_version_and_help_import_no_heavy_library(args):
    from tuneforge import __version__

    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "heavy: []", result.stdout
    if args == ["version"]:
        assert lines == [f"tuneforge {__version__}", "heavy: []"]
    else:
        assert "train" in result.stdout and "data" in result.stdout


def test_version_through_python_m():
    from tuneforge import __version__

    result = run_cli("version")
    assert result.returncode == 0 and result.stdout == f"tuneforge {__version__}\n", result.stderr


def test_env_lists_versions_devices_and_extras():
    result = run_cli("env")
    assert result.returncode == 0
    for word in ("transformers", "peft", "trl", "torch", "device", "extra liger"):
        assert word in result.stdout


def test_data_check_shows_samples_and_lengths(tmp_path):
    result = run_cli("data", "check", str(REPO / "examples" / "demo" / "identity_lora.yaml"), "cutoff_len=24",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "template qwen3_nothink" in out and "matches the tokenizer's chat_template" in out
    assert "dataset identity: 80 examples" in out
    assert "p50" in out and "p99" in out and "exceed cutoff_len 24" in out
    assert "--- sample 0" in out and "--- sample 1" in out and "Forge" in out
    assert not (tmp_path / "saves").exists()  # checking writes nothing


def test_data_check_shows_what_padding_free_batching_saves_and_needs_no_output_dir(tmp_path):
    import re

    config = tmp_path / "no_output.yaml"
    config.write_text("model_name_or_path: tuneforge/tiny\nstage: sft\ndataset: identity\ntemplate: qwen3_nothink\n"
                      "identity_name: Forge\nidentity_author: Lab\nper_device_train_batch_size: 4\n"
                      "cutoff_len: 256\n", encoding="utf-8")
    result = run_cli("data", "check", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("batches of 4"))
    worst, padded, real, padding = (int(v.replace(",", "")) for v in re.search(
        r"at most ([\d,]+) tokens.*compute ([\d,]+) tokens for ([\d,]+) real \((\d+)% padding", line).groups())
    assert real < padded and 0 < padding < 100 and worst <= 4 * 256
    assert "packing: true makes" in line


def test_data_check_warns_on_template_mismatch(tmp_path):
    result = run_cli("data", "check", str(REPO / "examples" / "demo" / "identity_lora.yaml"), "template=qwen",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "renders differently from the tokenizer's own chat_template" in result.stdout


def test_data_check_keeps_brackets_in_names_and_paths(tmp_path):
    """rich would read `[v2]` as markup and drop it: names and skipped-record lines print as they are."""
    import json

    data = tmp_path / "data [v2]"
    data.mkdir()
    rows = [{"instruction": "hi", "output": "hello"}, {"instruction": "bad"}]
    (data / "my[v2].json").write_text(json.dumps(rows), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({"mine[v2]": {"file_name": "my[v2].json"}}), encoding="utf-8")
    config = tmp_path / "check.yaml"
    config.write_text(f"model_name_or_path: tuneforge/tiny\nstage: sft\ndataset: mine[v2]\ntemplate: qwen3_nothink\n"
                      f"dataset_dir: {data}\nbad_records: skip\n", encoding="utf-8")
    result = run_cli("data", "check", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "dataset mine[v2]: 1 examples" in result.stdout
    assert "my[v2].json" in result.stdout  # the skipped record's line names its file
