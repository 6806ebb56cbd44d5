"""Stages other than sft under several processes: KTO's KL term (its pairs are made across the dataset, the KL mean
gathered over ranks) and the reward model train as one process does; PPO's hand-written loop refuses to run as
several ranks."""

from __future__ import annotations

import pytest

from distributed.helpers import check, config, losses, one_process, run, side_by_side, steps, tuneforge

STAGES = {
    # KTO: the KL estimate is each rank's batch mean of mismatched pairs, gathered over the ranks
    "kto": (dict(stage="kto", dataset="kto_demo", max_samples=12, learning_rate=5e-3, max_steps=3, pref_beta=0.1),
            ("loss", "kl", "rewards/margins")),
    # rm: a reward model (value head on the causal LM) on chosen/rejected pairs
    "rm": (dict(stage="rm", dataset="preference_demo", max_samples=16, learning_rate=5e-3, max_steps=3),
           ("loss", "accuracy", "margin")),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_preference_stages_with_two_ranks_equal_one_process(tmp_path, stage):
    keys, logged = STAGES[stage]
    reference = one_process(tmp_path / "one", **keys)
    path, out = config(tmp_path, **keys)
    result, seconds = run(tuneforge("train", str(path)), FORCE_TORCHRUN="1", NPROC_PER_NODE="2")
    check(result)
    side_by_side(stage, losses(out), [r["loss"] for r in reference], seconds)
    ours = steps(out)
    for key in logged:
        assert [r[key] for r in ours] == pytest.approx([r[key] for r in reference], abs=1e-5), key
    if stage == "kto":
        assert any(r["kl"] > 0 for r in ours)  # the KL term moved once the policy left its reference


def test_ppo_refuses_several_processes_in_one_line(monkeypatch):
    from tuneforge.config.errors import ConfigError
    from tuneforge.config.load import load
    from tuneforge.stages.registry import get_stage

    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny", "stage": "ppo", "do_train": True, "dataset": "identity",
                        "reward_model": "some/reward", "output_dir": "out", "finetuning_type": "lora"})
    stage = get_stage("ppo")
    assert stage.one_process  # tuneforge train never launches it as several ranks
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="stage ppo trains in one process, not 2"):
        stage.check(cfg)
