"""bench/gpu_check.py runs (on a CPU: the model check for real, the CUDA-only checks report n/a),
so the first session with a GPU does not spend device time on a broken script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_script_runs_and_its_model_check_passes():
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--shape", "small",
                             "--tokens", "256"], capture_output=True, text=True, timeout=600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("CHECK ")]
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(line.startswith("CHECK model ok") for line in lines), lines
    assert any(line.startswith("CHECK memory_256_nockpt") for line in lines), lines
    assert not any(" FAIL " in line for line in lines)
