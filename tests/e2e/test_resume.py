"""Interrupted runs resume at the same step with the same loss curve."""

from __future__ import annotations

import shutil

import pytest

from e2e.helpers import log_lines, train

RUN = dict(finetuning_type="lora", learning_rate=5e-3, max_steps=20, logging_steps=1, save_strategy="steps",
           save_steps=10)


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(tmp_path):
    full = train(tmp_path / "a", **RUN)
    reference = {r["current_steps"]: r["loss"] for r in log_lines(full) if "loss" in r}

    # The same run "interrupted" after its step-10 checkpoint: later state is gone.
    cut = tmp_path / "b"
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoint-20")
    for name in ("adapter_model.safetensors", "all_results.json", "train_results.json", "trainer_state.json"):
        (cut / name).unlink()
    resumed = train(tmp_path / "c", **RUN, output_dir=cut, resume_from_checkpoint=True, overwrite_output_dir=False)
    lines = [r for r in log_lines(resumed) if "loss" in r]
    steps = [r["current_steps"] for r in lines]
    assert steps == sorted(set(steps)) == list(range(1, 21))  # no duplicated or missing steps in the log
    for record in lines:
        assert abs(record["loss"] - reference[record["current_steps"]]) < 1e-4, record
