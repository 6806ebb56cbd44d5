"""`python -m tuneforge.webui.child RUN_DIR`: the leader of a web UI run's process group.

It starts the run's recorded command (`tuneforge train RUN_DIR/webui_config.yaml`) with its output
going to the run's log file, waits, and writes the exit code beside it, so that a UI started later
still knows how the run ended (a restarted server is not the run's parent and cannot wait on it).
Stop signals the whole group: the train process stops gracefully; this process shrugs the signal
off to outlive it (a Python handler, unlike SIG_IGN, is not inherited by the command it starts).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tuneforge.atomic import write_atomic

RUN_FILE = "webui_run.json"
LOG_FILE = "webui_train.log"
EXIT_FILE = "webui_exit.json"


def _outlive(signum: int, frame: object) -> None:
    """The command gets the same signal and decides; its exit code is what we record."""


def main(run_dir: str) -> int:
    folder = Path(run_dir)
    info = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    signal.signal(signal.SIGTERM, _outlive)
    signal.signal(signal.SIGINT, _outlive)
    # the recorded command names `tuneforge`; run it with this interpreter (the same entry point)
    command = [sys.executable, "-m", "tuneforge", *info["command"][1:]]
    with open(folder / LOG_FILE, "ab") as log:
        log.write(f"$ {' '.join(info['command'])}\n".encode())
        log.flush()
        code = subprocess.call(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               cwd=info.get("cwd") or None)
        log.write(f"\n[exit code {code}]\n".encode())
    write_atomic(folder / EXIT_FILE, json.dumps({"code": code, "ended": time.time()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
