"""Kill `tuneforge train` many times and resume it after each kill; does every run still end exactly where
a run that was never interrupted ends?

    .venv/bin/python bench/kill_resume.py                 # 30 kills
    .venv/bin/python bench/kill_resume.py --kills 60 --seed 1

The run: the tiny model, LoRA, 24 steps, a checkpoint every 4, an evaluation every 6 (8 eval batches),
every step logged. Each kill is aimed, in turn, at a training step, a checkpoint save or an evaluation
(the test hooks of src/tuneforge/train/testhooks.py stretch steps, eval batches and saves so a kill can
land inside them), and sent, in turn, as SIGKILL, SIGTERM or SIGINT. After each kill the run is resumed
(`resume_from_checkpoint=true`; started afresh if no checkpoint existed yet); the resumed process may be
killed again. When a run completes, its per-step losses, eval losses and final adapter are compared with
the uninterrupted run's. A kill counts as survived when every process after it started without an error
and the run it belonged to completed with no difference at all. The crash harness of
tests/reliability/harness.py does the starting, waiting and comparing.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reliability.harness import (Run, differences, log_records, saving, steps_logged,  # noqa: E402
                                 write_config)

KEYS = dict(max_steps=24, save_steps=4, val_size=8, eval_strategy="steps", eval_steps=6, per_device_eval_batch_size=1)
HOOKS = {"TUNEFORGE_TEST_STEP_DELAY": "0.15", "TUNEFORGE_TEST_SAVE_DELAY": "0.4"}
TARGETS = ("step", "save", "eval")
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


@dataclass
class Tally:
    tried: int = 0
    survived: int = 0
    exits: dict[str, list[int]] = field(default_factory=dict)
    inside: dict[str, list[bool]] = field(default_factory=dict)  # the signal went while the moment lasted
    stop_seconds: list[float] = field(default_factory=list)  # SIGTERM/SIGINT -> exit
    worst: tuple[float, float] = (0.0, 0.0)
    failures: list[str] = field(default_factory=list)


def evaluating(out: Path) -> bool:
    """An evaluation is under way: the last logged step is an eval step whose eval line is not there yet."""
    records = log_records(out)
    step = max((r.get("current_steps", 0) for r in records), default=0)
    return step > 0 and step % KEYS["eval_steps"] == 0 and not any(
        r.get("current_steps") == step and "eval_loss" in r for r in records)


def aim(run: Run, target: str, rng: random.Random) -> bool | None:
    """Wait for the moment `target` names, a random instant into it. None if the run ended first; else
    whether the moment still lasts (the save's folder, the evaluation) right before the signal goes."""
    out = run.out
    try:
        if target == "step":
            goal = steps_logged(out) + rng.randint(1, 3)
            run.wait_until(lambda: steps_logged(out) >= goal, what=f"step {goal}")
            time.sleep(rng.uniform(0, 0.15))
            inside = True
        elif target == "save":
            run.wait_until(lambda: saving(out), what="a save")
            time.sleep(rng.uniform(0, 0.7))
            inside = saving(out)
        else:
            run.wait_until(lambda: evaluating(out), what="an evaluation")
            time.sleep(rng.uniform(0.05, 0.9))
            inside = evaluating(out)
    except AssertionError:
        return None
    return inside if run.proc.poll() is None else None


def next_run(config: Path, out: Path) -> Run:
    resumable = any((p / "tuneforge_complete.json").is_file() for p in out.glob("checkpoint-*"))
    return Run(config, "resume_from_checkpoint=true", env=HOOKS) if resumable else Run(config, env=HOOKS)


def one_training(config: Path, reference: Path, kills: int, first: int, rng: random.Random, tally: Tally) -> int:
    """Kill one run up to `kills` times, resuming after each, until it completes; returns the kills sent."""
    out = config.parent / "out"
    shutil.rmtree(out, ignore_errors=True)
    sent, ok, run = 0, True, Run(config, env=HOOKS)
    while True:
        if sent < kills:
            index = first + sent
            target, signum = TARGETS[index % 3], SIGNALS[(index // 3) % 3]
            inside = aim(run, target, rng)
            if inside is not None:
                run.signal(signum)
                started = time.monotonic()
                code = run.finish()
                name = f"{signal.Signals(signum).name} mid-{target}"
                tally.exits.setdefault(name, []).append(code)
                tally.inside.setdefault(name, []).append(inside)
                if signum != signal.SIGKILL:
                    tally.stop_seconds.append(time.monotonic() - started)
                    ok &= code in (75, 0)
                sent += 1
                run = next_run(config, out)
                continue
        code = run.finish()
        if code != 0:
            ok = False
            tally.failures.append(f"exit {code}: {run.stderr.strip().splitlines()[-1:]}")
            if sent == 0:
                return 0
            run = next_run(config, out)  # count it and go on
            continue
        break
    diff = differences(reference, out)
    tally.worst = max(tally.worst, diff)
    ok &= diff == (0.0, 0.0)
    tally.tried += sent
    tally.survived += sent if ok else 0
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--per-run", type=int, default=5, help="kills per training run before it may complete")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng, tally = random.Random(args.seed), Tally()
    with tempfile.TemporaryDirectory(prefix="kill-resume-") as tmp:
        base = Path(tmp)
        reference = Run(write_config(base / "reference", **KEYS))
        assert reference.finish() == 0, reference.stderr[-2000:]
        config = write_config(base / "killed", **KEYS)
        started = time.time()
        while tally.tried < args.kills:
            if not one_training(config, reference.out, min(args.per_run, args.kills - tally.tried), tally.tried,
                                rng, tally):
                break  # the run failed before any kill: reported below
        report(tally, time.time() - started)


def report(tally: Tally, seconds: float) -> None:
    for name, codes in sorted(tally.exits.items()):
        print(f"{name:>18}: {len(codes)} kills ({sum(tally.inside[name])} sent inside it), "
              f"exit codes {sorted(set(codes))}")
    if tally.stop_seconds:
        print(f"SIGTERM/SIGINT to exit: median {sorted(tally.stop_seconds)[len(tally.stop_seconds) // 2]:.2f}s, "
              f"max {max(tally.stop_seconds):.2f}s (a step lasts >= {HOOKS['TUNEFORGE_TEST_STEP_DELAY']}s, "
              f"a save >= {2 * float(HOOKS['TUNEFORGE_TEST_SAVE_DELAY'])}s here)")
    for failure in tally.failures:
        print("failure:", failure)
    print(f"kills survived / kills tried: {tally.survived} / {tally.tried}")
    print(f"max resume difference: loss {tally.worst[0]}, adapter weights {tally.worst[1]} ({seconds:.0f}s)")


if __name__ == "__main__":
    main()
