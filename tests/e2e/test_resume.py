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


@pytest.mark.slow
@pytest.mark.parametrize("batches", [dict(packing=True, gradient_accumulation_steps=2),
                                     dict(padding_free=False, gradient_accumulation_steps=3)],
                         ids=["packed-accumulated", "padded-accumulated"])
def test_resume_is_exact_for_packed_padded_and_accumulated_batches(tmp_path, batches):
    """Killed right after checkpoint-4 (later files gone): the resumed run logs the same loss at every step
    and ends with the same adapter, bit for bit."""
    from safetensors.torch import load_file

    keys = dict(RUN, **batches, max_steps=8, save_steps=4, per_device_train_batch_size=2)
    full = train(tmp_path / "a", **keys)
    cut = tmp_path / "b"
    shutil.copytree(full / "checkpoint-4", cut / "checkpoint-4")
    shutil.copy(full / "trainer_log.jsonl", cut / "trainer_log.jsonl")
    train(tmp_path / "c", **keys, output_dir=cut, resume_from_checkpoint=True, overwrite_output_dir=False)
    assert [(r["current_steps"], r["loss"]) for r in log_lines(cut)] == \
        [(r["current_steps"], r["loss"]) for r in log_lines(full)]
    a, b = load_file(str(full / "adapter_model.safetensors")), load_file(str(cut / "adapter_model.safetensors"))
    assert all(bool((a[k] == b[k]).all()) for k in a)
