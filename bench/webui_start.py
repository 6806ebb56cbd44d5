"""How long `tuneforge webui` takes from the command to the page answering (HTTP 200 on /).

    python bench/webui_start.py [--runs 3]

Starts the real command in a temporary folder (its own output root) --runs times after one warm-up
start, and prints the median and the spread; the server is ended with SIGTERM each time. The browser
suite (tests/browser) records the same figure for its own server in tests/browser/artifacts/timings.json.
Timings depend on the machine and its load; compare on one machine.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_start() -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "tuneforge", "webui", "--port", str(port)], cwd=folder,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"tuneforge webui exited with {proc.returncode}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                        if response.status == 200:
                            return time.perf_counter() - started
                except OSError:
                    time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    one_start()  # warm-up: a cold disk cache is not what a user meets twice
    times = [one_start() for _ in range(runs)]
    print(f"tuneforge webui -> page answering: median {statistics.median(times):.2f} s "
          f"(min {min(times):.2f}, max {max(times):.2f}, {runs} starts)")


if __name__ == "__main__":
    main()
