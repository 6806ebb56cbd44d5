"""Helpers for the browser tests: a real `tuneforge webui` server (the CLI, a subprocess) and Debian's
headless chromium driven by playwright's Python package (no browser download: `make browser`
installs chromium when missing)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "browser" / "artifacts"
# every host but this machine is unreachable: a page that fetched anything from the internet would break
ARGS = ["--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One `tuneforge webui` process; `seconds` is the time from its start to the page answering."""

    folder: Path
    root: Path
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> Server:
        self.port = free_port()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        log = open(ARTIFACTS / f"server-{self.port}.log", "w")  # kept for CI to show
        started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "tuneforge", "webui", "--port", str(self.port),
                                      "--output-root", str(self.root), *self.args], cwd=self.folder,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "COLUMNS": "200"})
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, (ARTIFACTS / f"server-{self.port}.log").read_text()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        self.seconds = time.perf_counter() - started
                        return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"tuneforge webui did not answer on {self.url}")

    def stop(self) -> None:
        """SIGTERM, as a terminal's Ctrl+C or a service manager would end it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def kill_runs(root: Path) -> None:
    """End every run the tests started (their own process groups outlive the servers by design)."""
    for info_file in root.rglob("webui_run.json"):
        pgid = json.loads(info_file.read_text()).get("pgid")
        if pgid:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def timings(name: str, seconds: float) -> None:
    """Figures the report quotes, kept beside the screenshots."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "timings.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = round(seconds, 2)
    path.write_text(json.dumps(data, indent=1))
