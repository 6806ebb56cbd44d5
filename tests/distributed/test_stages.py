"""Stages other than sft under several processes: KTO's KL term (its pairs are made across the dataset, the KL mean
gathered over ranks), DPO, the reward model and the hand-written PPO loop train as one process does."""

from __future__ import annotations

import pytest

from distributed.helpers import BASE, check, config, losses, one_process, run, side_by_side, steps, tuneforge

STAGES = {
    # KTO: the KL estimate is each rank's batch mean of mismatched pairs, gathered over the ranks
    "kto": (dict(stage="kto", dataset="kto_demo", max_samples=12, learning_rate=5e-3, max_steps=3, pref_beta=0.1),
            ("loss", "kl", "rewards/margins")),
    # dpo: trl's DPOTrainer, the reference being the disabled adapter
    "dpo": (dict(stage="dpo", dataset="preference_demo", max_samples=16, learning_rate=5e-3, max_steps=3,
                 pref_beta=0.1), ("loss", "rewards/margins", "rewards/accuracies")),
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
    for key in logged:  # gathered sums add up in another order: equal to float32 rounding
        assert [r[key] for r in ours] == pytest.approx([r[key] for r in reference], rel=1e-5, abs=1e-5), key
    if stage == "kto":
        assert any(r["kl"] > 0 for r in ours)  # the KL term moved once the policy left its reference


@pytest.mark.slow
def test_ppo_two_ranks_equal_one_process(tmp_path):
    """The hand-written PPO loop as two ranks: each rolls out half the step's prompts, the update is global (averaged
    gradients, whitening, score statistics and the adaptive KL over both halves), so with greedy answers it trains
    what one process trains on the whole batch (two mini-batches accumulated into one optimizer step)."""
    from conftest import write_yaml
    from tuneforge.cli.train import run_train

    rm_out = tmp_path / "rm"
    run_train(write_yaml(tmp_path / "rm.yaml", **{**BASE, "stage": "rm", "dataset": "preference_demo", "max_samples": 8,
                                                    "max_steps": 2, "learning_rate": 5e-3, "output_dir": str(rm_out)}), [])
    ppo = dict(stage="ppo", dataset="identity", reward_model=str(rm_out), max_steps=3, ppo_epochs=2, cutoff_len=64,
               max_new_tokens=8, do_sample=False, learning_rate=5e-3, ppo_buffer_size=1, per_device_train_batch_size=2)
    reference = one_process(tmp_path / "one", **ppo, gradient_accumulation_steps=2)
    path, out = config(tmp_path, **ppo)
    result, seconds = run(tuneforge("train", str(path)), FORCE_TORCHRUN="1", NPROC_PER_NODE="2")
    check(result)
    side_by_side("ppo", losses(out), [r["loss"] for r in reference], seconds)
    ours = steps(out)
    assert [r["current_steps"] for r in ours] == [1, 2, 3]
    for key in ("loss", "reward", "kl", "kl_coef", "grad_norm", "response_length"):
        assert [r[key] for r in ours] == pytest.approx([r[key] for r in reference], abs=1e-4), key
    assert (out / "value_head.safetensors").is_file() and (out / "adapter_model.safetensors").is_file()
