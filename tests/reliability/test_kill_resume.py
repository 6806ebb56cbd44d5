"""Kill `tuneforge train` (-9, SIGTERM, SIGINT) mid-step and mid-save, resume, and get the run that was
never interrupted: the same loss at every step and the same final adapter."""

from __future__ import annotations

import json
import shlex
import signal

import pytest

from reliability.harness import (Run, differences, reference, resume, saving,  # noqa: F401 (a fixture)
                                 steps_logged, write_config)

pytestmark = pytest.mark.slow
STEP = {"TUNEFORGE_TEST_STEP_DELAY": "0.25"}  # a step lasts long enough to aim at
SAVE = {"TUNEFORGE_TEST_SAVE_DELAY": "1.5"}  # a save stays open, half written, long enough to kill inside


def test_kill9_mid_step_then_mid_save_resumes_exactly(tmp_path, reference):
    config = write_config(tmp_path)
    out = config.parent / "out"
    run = Run(config, env=STEP)
    run.wait_until(lambda: steps_logged(out) >= 6, what="step 6")
    assert run.kill9() == -signal.SIGKILL

    second = resume(config, env=SAVE)  # resumes from checkpoint-4; killed inside the save of checkpoint-8
    second.wait_until(lambda: saving(out), what="the save of checkpoint-8")
    second.kill9()
    assert "resuming from" in second.stderr and "checkpoint-4" in second.stderr
    assert not (out / "checkpoint-8").exists()  # a cut save leaves no checkpoint-8 behind, whole or not

    last = resume(config)
    assert last.finish() == 0, last.stderr[-3000:]
    assert "cut short" in last.stderr  # the killed save's temporary folder: removed, and said so
    assert "resuming from" in last.stderr and "checkpoint-4 (step 4)" in last.stderr
    assert not any(p.name.startswith(".tmp-") for p in out.iterdir())
    assert differences(reference, out) == (0.0, 0.0)


def test_sigterm_saves_the_step_exits_75_and_says_how_to_resume(tmp_path, reference):
    config = write_config(tmp_path, plot_loss=True)
    out = config.parent / "out"
    run = Run(config, env=STEP)
    run.wait_until(lambda: steps_logged(out) >= 5, what="step 5")
    run.signal(signal.SIGTERM)
    assert run.finish() == 75, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    last_line = run.stderr.strip().splitlines()[-1]
    step = json.loads((out / "trainer_log.jsonl").read_text().splitlines()[-1])["current_steps"]
    assert step in (5, 6, 7)  # the step under way when the signal came (within one step)
    assert last_line == (f"tuneforge: stopped at step {step} of 12 by SIGTERM; saved {out}/checkpoint-{step}; "
                         f"resume with: tuneforge train {config} resume_from_checkpoint=true")
    assert (out / f"checkpoint-{step}" / "tuneforge_complete.json").is_file()
    assert (out / "training_loss.png").is_file()
    assert not (out / "adapter_model.safetensors").exists()  # no final model from an unfinished run

    # SIGINT while the next save is open: that save completes and becomes the stopping point
    command = shlex.split(last_line.split("resume with: ")[1])
    second = Run(config, *command[3:], env=SAVE)
    second.wait_until(lambda: saving(out), what="the save of checkpoint-8")
    second.signal(signal.SIGINT)
    assert second.finish() == 75, second.stderr[-3000:]
    assert "stopped at step 8 of 12 by SIGINT" in second.stderr

    last = resume(config)
    assert last.finish() == 0, last.stderr[-3000:]
    assert differences(reference, out) == (0.0, 0.0)


def test_a_second_signal_aborts_at_once(tmp_path):
    config = write_config(tmp_path)
    out = config.parent / "out"
    run = Run(config, env={"TUNEFORGE_TEST_STEP_DELAY": "30"})  # step 1 would take 30 s
    run.wait_until(lambda: out.joinpath("trainer_log.jsonl").exists(), what="training to start")
    run.signal(signal.SIGTERM)
    run.wait_until(lambda: "SIGTERM received" in run.stderr, what="the first signal's note")
    run.signal(signal.SIGTERM)
    assert run.finish(timeout=20) == 143
    lines = [line for line in run.stderr.splitlines() if line.startswith("tuneforge: second")]
    assert lines == ["tuneforge: second SIGTERM: aborting now without saving"]
    assert "Traceback" not in run.stderr
    assert not list(out.glob("checkpoint-*"))
