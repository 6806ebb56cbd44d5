"""`tuneforge webui` on the command line: bad options get one error line; other commands never import
gradio."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import assert_one_error_line, run_cli

PROBE = """
import sys
sys.argv = ["tuneforge", "--help"]
from tuneforge.cli.main import run
try:
    run()
except SystemExit as exc:
    assert not exc.code, exc.code
print("gradio" in sys.modules, "webui" in sys.modules.get("tuneforge.webui.app", "").__class__.__name__)
"""


def test_help_lists_webui_and_imports_no_gradio():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "webui" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("False")


@pytest.mark.parametrize("args,needle", [(["--auth", "admin"], "--auth must be user:password"),
                                         (["--lang", "fr"], "--lang must be en or zh"),
                                         (["--port", "70000"], "--port must be between 1 and 65535")])
def test_bad_options_get_one_error_line(args, needle):
    assert_one_error_line(run_cli("webui", *args), needle)
