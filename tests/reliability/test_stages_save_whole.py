"""Every Trainer-based stage saves its checkpoints whole: trl's trainers (their own `_save_checkpoint`
overrides included) write into the staging folder, the manifest comes last, save_total_limit rotates
complete checkpoints only. sft is covered by the rest of tests/reliability, ppo by test_ppo_resume."""

from __future__ import annotations

import json

import pytest

from e2e.helpers import train
from stages.test_dpo import TOY_RUN, toy_dir
from stages.test_kto import KTO
from stages.test_online import ONLINE, write_sky_data

pytestmark = pytest.mark.slow
SAVES = dict(max_steps=2, save_strategy="steps", save_steps=1, save_total_limit=1, logging_steps=1)
REWARD = "def length(prompts, completions, **kwargs):\n    return [float(len(c)) for c in completions]\n"


def keys_for(stage: str, tmp_path) -> dict:
    if stage == "dpo":
        return dict(TOY_RUN, dataset_dir=str(toy_dir(tmp_path)), eval_dataset=None)
    if stage == "kto":
        return dict(KTO)
    (tmp_path / "rewards.py").write_text(REWARD, encoding="utf-8")
    return dict(ONLINE, stage="grpo", dataset_dir=str(write_sky_data(tmp_path / "data")), pref_beta=0.0,
                per_device_train_batch_size=4, reward_funcs=f"{tmp_path / 'rewards.py'}:length")


@pytest.mark.parametrize("stage", ["dpo", "kto", "grpo"])
def test_trl_stages_write_checkpoints_whole(stage, tmp_path):
    from tuneforge.train.checkpoints import incomplete_reason

    out = train(tmp_path / "run", **{**keys_for(stage, tmp_path), **SAVES})
    names = sorted(p.name for p in out.iterdir() if "checkpoint" in p.name or p.name.startswith(".tmp"))
    assert names == ["checkpoint-2"]  # checkpoint-1 rotated away once checkpoint-2 was whole; no staging left
    manifest = json.loads((out / "checkpoint-2" / "tuneforge_complete.json").read_text())
    assert manifest["step"] == 2 and "optimizer.pt" in manifest["files"] and "trainer_state.json" in manifest["files"]
    assert incomplete_reason(out / "checkpoint-2") is None
    assert (out / "adapter_model.safetensors").is_file() and (out / "all_results.json").is_file()
