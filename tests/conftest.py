"""Shared fixtures. Tests never touch the network: the tiny model is built locally."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One fresh cache per test session: tests never depend on what an earlier run left behind.
os.environ.setdefault("TUNEFORGE_CACHE", tempfile.mkdtemp(prefix="tuneforge-test-cache-"))

REPO = Path(__file__).resolve().parents[1]
_SESSION_ENV = dict(os.environ)


@pytest.fixture(autouse=True)
def _environment_restored():
    """datasets' `map(num_proc=...)` replaces `os.environ` with a copy, so monkeypatch's undo lands on the old
    object and a test's TUNEFORGE_CACHE would leak into every later test: put the session's values back."""
    yield
    for key in ("TUNEFORGE_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(key) != _SESSION_ENV.get(key):
            os.environ[key] = _SESSION_ENV[key]

def _find_shared() -> Path:
    """The project's shared test data: $TUNEFORGE_SHARED, else ../shared beside the checkout, else /work/shared."""
    candidates = [os.environ.get("TUNEFORGE_SHARED"), REPO.parent / "shared", "/work/shared"]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "data").is_dir():
            return Path(candidate)
    return REPO.parent / "shared"


SHARED = _find_shared()
LF_DATA = SHARED / "data" / "llamafactory"
CHAT_TEMPLATES = SHARED / "data" / "chat_templates" / "chat_templates"


def need_shared() -> None:
    """Skip a test that needs ../shared when it is missing; in CI (CI=true), where the data is always provided,
    fail instead, so a lost mount can't turn those tests into silent skips."""
    if LF_DATA.is_dir():
        return
    message = f"shared test data not found at {SHARED} (set TUNEFORGE_SHARED)"
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def tiny_path() -> Path:
    from tuneforge.model import tiny

    return tiny.ensure()


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_path)


@pytest.fixture(scope="session")
def identity_adapter(tmp_path_factory) -> Path:
    """The identity-trained LoRA adapter (name Forge) that chat, API, predict and export tests share:
    trained once per test session."""
    from e2e.helpers import train

    return train(tmp_path_factory.mktemp("identity"), finetuning_type="lora", lora_rank=16, learning_rate=5e-3,
                 num_train_epochs=15)


def run_cli(*args: str, cwd: str | Path | None = None, stdin: str | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m tuneforge ...` as a user would, capturing output."""
    return subprocess.run([sys.executable, "-m", "tuneforge", *args], cwd=cwd, input=stdin, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def hide_from_children(package: str, tmp_path: Path, monkeypatch) -> None:
    """Child processes (run_cli) see `package` as not installed: a sitecustomize on PYTHONPATH blocks it."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(f"import sys\nsys.modules[{package!r}] = None\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", f"{shim}:{':'.join(sys.path)}")


def write_yaml(path: Path, **keys) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(keys, allow_unicode=True), encoding="utf-8")
    return path


def assert_one_error_line(result: subprocess.CompletedProcess, *needles: str, alone: bool = True) -> str:
    """A user error as the CLI reports it: exit code 2, no traceback, one line starting with "error: " that holds
    every needle, and nothing else on stderr. `alone=False` is for errors found only after work began (the
    model loaded): progress and `tuneforge:` notes may come before the error line, which is still the last
    line and the only one starting with "error". Returns the error line."""
    stderr = result.stderr
    context = f"\n--- stderr ---\n{stderr[-3000:]}\n--- stdout ---\n{(result.stdout or '')[-2000:]}"
    assert "Traceback" not in stderr, context
    assert result.returncode == 2, f"exit code {result.returncode}, not 2{context}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), f"stderr does not end with an 'error: ' line{context}"
    if alone:
        assert len(lines) == 1, f"more than the error line on stderr{context}"
    assert sum(line.lstrip().lower().startswith("error") for line in lines) == 1, f"more than one error line{context}"
    for needle in needles:
        assert needle in lines[-1], f"{needle!r} not in the error line{context}"
    return lines[-1]
