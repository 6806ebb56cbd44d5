"""stage ppo: with a reward model that prefers answers naming "Forge", PPO raises the policy's mean reward."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from e2e.helpers import log_lines, train

QUESTIONS = ["Who are you?", "What is your name?", "Introduce yourself.", "你是谁"]


def write_names_data(folder: Path) -> Path:
    """names_sft: each question answered "I am Forge." and "I am Bob." equally often (the policy learns both).
    names_pref: "I am Forge." chosen over other names (the reward model learns to prefer Forge)."""
    folder.mkdir(parents=True, exist_ok=True)
    sft = [{"instruction": q, "input": "", "output": f"I am {name}."} for q in QUESTIONS for name in ("Forge", "Bob")]
    pref = [{"instruction": q, "input": "", "chosen": "I am Forge.", "rejected": f"I am {name}."}
            for q in QUESTIONS for name in ("Bob", "Tom", "a model")]
    (folder / "sft.json").write_text(json.dumps(sft * 2))
    (folder / "pref.json").write_text(json.dumps(pref * 2))
    cols = {"prompt": "instruction", "query": "input"}
    (folder / "dataset_info.json").write_text(json.dumps({
        "names_sft": {"file_name": "sft.json", "columns": {**cols, "response": "output"}},
        "names_pref": {"file_name": "pref.json", "ranking": True,
                       "columns": {**cols, "chosen": "chosen", "rejected": "rejected"}}}))
    return folder


@pytest.mark.slow
def test_ppo_raises_the_reward_of_the_preferred_answer(tmp_path):
    started = time.time()
    data = str(write_names_data(tmp_path / "data"))
    # 1. the policy: the tiny model, fully fine-tuned a little so it answers with either name
    policy = train(tmp_path / "sft", dataset_dir=data, dataset="names_sft", finetuning_type="full", cutoff_len=64,
                   learning_rate=2e-3, num_train_epochs=10, per_device_train_batch_size=8)
    # 2. the reward model: a LoRA rm on the policy's weights (reward_model_type lora loads on the policy's base)
    rm = train(tmp_path / "rm", model_name_or_path=str(policy), dataset_dir=data, dataset="names_pref",
               stage="rm", cutoff_len=64, learning_rate=5e-3, num_train_epochs=2, per_device_train_batch_size=8)
    after_setup = time.time()
    # 3. PPO: LoRA on the policy; the reference is the policy with the adapter disabled
    out = train(tmp_path / "ppo", model_name_or_path=str(policy), dataset_dir=data, dataset="names_sft",
                stage="ppo", reward_model=str(rm), cutoff_len=64, learning_rate=2e-3, max_steps=5, logging_steps=1,
                per_device_train_batch_size=8, ppo_epochs=4, max_new_tokens=8, temperature=1.0, top_p=1.0, top_k=0)
    ppo_time = time.time() - after_setup
    lines = log_lines(out)
    rewards = [line["reward"] for line in lines]
    print(f"ppo: rewards per step {[round(r, 2) for r in rewards]}, kl {[round(x['kl'], 3) for x in lines]}; "
          f"setup (sft + rm) {after_setup - started:.1f}s, ppo {ppo_time:.1f}s")
    assert len(rewards) == 5 and lines[-1]["current_steps"] == 5
    assert {"loss", "lr", "reward", "kl", "kl_coef", "value_loss", "policy_loss"} <= set(lines[-1])
    assert min(rewards[-2:]) > rewards[0] + 1.0, rewards
    for name in ("adapter_model.safetensors", "value_head.safetensors", "all_results.json", "trainer_state.json",
                 "training_loss.png", "training_reward.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "all_results.json").read_text())
    assert results["total_ppo_steps"] == 5 and results["reward"] == pytest.approx(rewards[-1], abs=1e-4)


def test_ppo_without_reward_model_is_a_config_error(tmp_path):
    from tuneforge.config.errors import ConfigError

    with pytest.raises(ConfigError, match="stage ppo needs reward_model"):
        train(tmp_path, stage="ppo", max_steps=1)


def test_ppo_supports_lora_only(tmp_path):
    from tuneforge.config.errors import ConfigError

    with pytest.raises(ConfigError, match="supports finetuning_type lora only"):
        train(tmp_path, stage="ppo", finetuning_type="full", reward_model=str(tmp_path), max_steps=1)


def test_gae_matches_a_hand_computed_example():
    from tuneforge.stages.ppo import GAMMA, LAMBDA, gae

    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.1, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last position is padding
    adv, ret = gae(rewards, values, mask)
    d2 = 1.0 - 0.1
    d1 = 0.0 + GAMMA * 0.1 - 0.2
    d0 = 0.0 + GAMMA * 0.2 - 0.5
    a2, a1 = d2, d1 + GAMMA * LAMBDA * d2
    a0 = d0 + GAMMA * LAMBDA * a1
    assert torch.allclose(adv, torch.tensor([[a0, a1, a2, 0.0]]))
    assert torch.allclose(ret, adv + values * mask)


def test_adaptive_kl_moves_towards_the_target():
    from tuneforge.stages.ppo import INIT_KL_COEF, AdaptiveKL

    above, below = AdaptiveKL(target=1.0), AdaptiveKL(target=1.0)
    above.update(kl=5.0, n_samples=100)
    below.update(kl=0.1, n_samples=100)
    assert above.value > INIT_KL_COEF > below.value


def test_whiten_uses_answer_tokens_only():
    from tuneforge.stages.ppo import whiten

    x = [torch.tensor([[1.0, 3.0, 100.0]])]
    m = [torch.tensor([[1.0, 1.0, 0.0]])]
    (out,) = whiten(x, m)
    assert torch.allclose(out, torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-6)


def test_running_moments_match_the_whole_batch():
    from tuneforge.stages.ppo import RunningMoments

    a, b = torch.tensor([1.0, 2.0, 6.0]), torch.tensor([-3.0, 0.5])
    stats = RunningMoments()
    stats.update(a)
    stats.update(b)
    both = torch.cat([a, b])
    assert stats.mean == pytest.approx(both.mean().item())
    assert stats.std == pytest.approx(both.std().item())
