"""bench/gpu_check.py runs (on a CPU: the parity checks for real, in child processes; the CUDA-only
checks report n/a), so the first session with a GPU does not spend device time on a broken script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_script_runs_and_its_checks_pass_on_cpu():
    checks = "kernel,parity_mistral_window,parity_qwen2_full,memory_full_ga4,vllm_predict"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--shape", "small",
                             "--tokens", "256", "--checks", checks], capture_output=True, text=True, timeout=800)
    lines = [line for line in result.stdout.splitlines() if line.startswith("CHECK ")]
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[1] for line in lines] == checks.split(","), lines
    assert any(line.startswith("CHECK parity_mistral_window ok") for line in lines), lines
    assert any(line.startswith("CHECK parity_qwen2_full ok") for line in lines), lines
    assert any(line.startswith("CHECK memory_full_ga4 n/a small: predicted") for line in lines), lines
    assert not any(" FAIL " in line for line in lines)
    assert "| check | result | detail | s |" in result.stdout  # the table
