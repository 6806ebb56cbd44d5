"""stage ppo (a hand-written loop) keeps the same promises: a signal saves the step and stops; resuming
repeats the uninterrupted run exactly (samples, rewards, losses, adapter and value head)."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from e2e.helpers import log_lines, train
from stages.test_ppo import write_names_data

pytestmark = pytest.mark.slow
PPO = dict(stage="ppo", dataset="names_sft", cutoff_len=64, learning_rate=2e-3, max_steps=4, logging_steps=1,
           save_strategy="steps", save_steps=2, per_device_train_batch_size=4, ppo_epochs=1, max_new_tokens=8,
           temperature=1.0, top_p=1.0, top_k=0, seed=3)


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ppo")
    data = str(write_names_data(folder / "data"))
    rm = train(folder / "rm", dataset_dir=data, dataset="names_pref", stage="rm", cutoff_len=64,
               learning_rate=5e-3, num_train_epochs=1, per_device_train_batch_size=8)
    return data, str(rm)


def outputs(out):
    from safetensors.torch import load_file

    return {**load_file(str(out / "adapter_model.safetensors")), **load_file(str(out / "value_head.safetensors"))}


def same_run(a, b) -> None:
    assert [(r["current_steps"], r["loss"], r["reward"]) for r in log_lines(a)] == \
        [(r["current_steps"], r["loss"], r["reward"]) for r in log_lines(b)]
    wa, wb = outputs(a), outputs(b)
    assert set(wa) == set(wb) and all(bool((wa[k] == wb[k]).all()) for k in wa)


def test_ppo_stops_on_sigterm_and_resumes_exactly(tmp_path, reward_model, monkeypatch):
    from tuneforge.stages import ppo
    from tuneforge.train.stop import TrainingStopped

    data, rm = reward_model
    keys = dict(PPO, dataset_dir=data, reward_model=rm)
    full = train(tmp_path / "full", **keys)
    assert (full / "checkpoint-2" / "tuneforge_complete.json").is_file()

    step = ppo._step

    def step_then_signal(*args, **kwargs):  # the signal lands during step 3
        logs = step(*args, **kwargs)
        if len(log_lines(tmp_path / "cut" / "out")) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return logs

    monkeypatch.setattr(ppo, "_step", step_then_signal)
    with pytest.raises(TrainingStopped) as stopped:
        train(tmp_path / "cut", **keys)
    cut = tmp_path / "cut" / "out"
    assert (stopped.value.step, stopped.value.max_steps) == (3, 4)
    assert stopped.value.checkpoint == str(cut / "checkpoint-3")
    assert (cut / "checkpoint-3" / "tuneforge_complete.json").is_file()
    assert not (cut / "adapter_model.safetensors").exists()
    monkeypatch.setattr(ppo, "_step", step)

    train(tmp_path / "cut", **keys, output_dir=cut, resume_from_checkpoint=True, overwrite_output_dir=False)
    same_run(full, cut)

    # resuming from the step-2 checkpoint (a kill -9 after it) repeats steps 3 and 4 exactly as well
    again = tmp_path / "again"
    shutil.copytree(full / "checkpoint-2", again / "checkpoint-2")
    shutil.copy(full / "trainer_log.jsonl", again / "trainer_log.jsonl")
    train(tmp_path / "again-cfg", **keys, output_dir=again, resume_from_checkpoint=True, overwrite_output_dir=False)
    same_run(full, again)
