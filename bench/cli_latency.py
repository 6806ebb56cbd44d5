"""How fast the command line starts: `tuneforge version` and `tuneforge --help` as fresh processes.

    python bench/cli_latency.py [--runs 9] [--budget 0.5]

Prints the median and the spread of each command's wall time over --runs processes (after one warm-up
run, so the figures exclude a cold disk cache), and the import time of tuneforge.cli.main alone. With
--budget SECONDS it exits 1 when a median is above it (the unit tests only check that these commands
import no heavy library: tests/cli/test_cli.py). Timings depend on the machine; compare on one machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {"version": ["-m", "tuneforge", "version"], "--help": ["-m", "tuneforge", "--help"],
            "import tuneforge.cli.main": ["-c", "import tuneforge.cli.main"]}


def wall_times(args: list[str], runs: int) -> list[float]:
    subprocess.run([sys.executable, *args], capture_output=True, check=True)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="processes per command (default 9)")
    parser.add_argument("--budget", type=float, default=None, help="fail when a median exceeds these seconds")
    opts = parser.parse_args()
    baseline = statistics.median(wall_times(["-c", "pass"], opts.runs))
    print(f"python {sys.version.split()[0]}: bare interpreter start {baseline * 1000:.0f} ms (median of {opts.runs})")
    over = []
    for name, args in COMMANDS.items():
        times = wall_times(args, opts.runs)
        median = statistics.median(times)
        print(f"{name:<26} median {median * 1000:6.0f} ms  min {min(times) * 1000:6.0f}  max {max(times) * 1000:6.0f}"
              f"  (+{(median - baseline) * 1000:.0f} ms over the bare interpreter)")
        if opts.budget is not None and median > opts.budget:
            over.append(f"{name} {median:.3f} s")
    if over:
        print(f"over the {opts.budget} s budget: {', '.join(over)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
