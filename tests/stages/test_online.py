"""stages grpo and rloo: with the rm stage's reward model preferring the known answer "Blue.", the mean reward
rises; plain Python reward functions work too; our prompt ids and stop tokens reach trl."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from e2e.helpers import log_lines, train

QUESTIONS = ["What colour is the sky?", "Which colour is the sea?", "Name the colour of a clear sky.",
             "天空是什么颜色？"]
ONLINE = dict(dataset="sky_sft", cutoff_len=64, learning_rate=2e-3, max_steps=6, logging_steps=1,
              per_device_train_batch_size=16, max_new_tokens=8, temperature=1.0, top_p=1.0, top_k=0)


def write_sky_data(folder: Path) -> Path:
    """sky_sft: every question answered "Blue." and "Green." equally often (the policy learns both).
    sky_pref: "Blue." chosen over other colours (the reward model learns to prefer it)."""
    folder.mkdir(parents=True, exist_ok=True)
    sft = [{"instruction": q, "output": a} for q in QUESTIONS for a in ("Blue.", "Green.")]
    pref = [{"instruction": q, "chosen": "Blue.", "rejected": a}
            for q in QUESTIONS for a in ("Green.", "Red.", "Pink.")]
    (folder / "sft.json").write_text(json.dumps(sft * 2), encoding="utf-8")
    (folder / "pref.json").write_text(json.dumps(pref * 2), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({
        "sky_sft": {"file_name": "sft.json"},
        "sky_pref": {"file_name": "pref.json", "ranking": True,
                     "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}}}))
    return folder


@pytest.fixture(scope="module")
def sky(tmp_path_factory) -> dict:
    """A policy that answers Blue or Green (the tiny model, fully fine-tuned a little) and a LoRA reward model
    trained by stage rm on it that prefers Blue."""
    started = time.time()
    root = tmp_path_factory.mktemp("sky")
    data = str(write_sky_data(root / "data"))
    policy = train(root / "sft", dataset_dir=data, dataset="sky_sft", finetuning_type="full", cutoff_len=64,
                   learning_rate=2e-3, num_train_epochs=10, per_device_train_batch_size=8)
    rm = train(root / "rm", model_name_or_path=str(policy), dataset_dir=data, dataset="sky_pref", stage="rm",
               cutoff_len=64, learning_rate=5e-3, num_train_epochs=2, per_device_train_batch_size=8)
    return {"data": data, "policy": str(policy), "rm": str(rm), "setup_s": time.time() - started}


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["grpo", "rloo"])
def test_reward_model_score_rises(stage, sky, tmp_path):
    started = time.time()
    out = train(tmp_path, model_name_or_path=sky["policy"], dataset_dir=sky["data"], stage=stage,
                reward_model=sky["rm"], **ONLINE)
    lines = log_lines(out)
    rewards = [line["reward"] for line in lines if "reward" in line]
    print(f"{stage}: rewards per step {[round(r, 2) for r in rewards]}, kl {[round(x['kl'], 3) for x in lines]}; "
          f"setup (sft + rm) {sky['setup_s']:.1f}s, {stage} {time.time() - started:.1f}s")
    assert len(rewards) == 6 and lines[-1]["current_steps"] == 6
    assert min(rewards[-2:]) > rewards[0] + 1.0, rewards
    last = lines[-1]
    assert {"loss", "reward", "reward_std", "kl", "rewards/reward_model/mean", "completions/mean_length"} <= set(last)
    assert last["completions/clipped_ratio"] == 0.0  # every answer ended at the template's stop token
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "training_loss.png", "training_reward.png", "all_results.json"} <= names
    assert "ref" not in names  # pref_beta > 0: the reference is the disabled adapter, no second adapter saved


REWARDS = '''
import json

def says_blue(prompts, completions, completion_ids, reference, **kwargs):
    with open({log!r}, "a") as log:
        log.write(json.dumps({{"prompts": prompts, "completions": completions, "ids": completion_ids,
                               "reference": reference}}) + "\\n")
    return [1.0 if text.strip() == "Blue." else 0.0 for text in completions]
'''


@pytest.mark.slow
def test_python_reward_function_without_reference(sky, tmp_path):
    """reward_funcs alone (no reward_model), pref_beta 0 (no reference pass), 2 completions per micro-step
    (a generation round then spans 2 micro-steps to hold a whole group of 4)."""
    from tuneforge.config.schema import ModelConfig
    from tuneforge.data.templates import get_template
    from tuneforge.model.load import load_tokenizer

    log = tmp_path / "calls.jsonl"
    (tmp_path / "my_rewards.py").write_text(REWARDS.format(log=str(log)), encoding="utf-8")
    out = train(tmp_path / "run", model_name_or_path=sky["policy"], dataset_dir=sky["data"], stage="grpo",
                reward_funcs=f"{tmp_path / 'my_rewards.py'}:says_blue", pref_beta=0.0,
                **dict(ONLINE, per_device_train_batch_size=2, max_steps=16, learning_rate=5e-3))
    lines = log_lines(out)
    rewards = [line["reward"] for line in lines if "reward" in line]
    print(f"grpo with a Python reward: {[round(r, 2) for r in rewards]}")
    assert len(lines) == 16 and len(rewards) == 8  # one generation round per 2 steps
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3, rewards
    scored = [line for line in lines if "reward" in line][-1]
    assert "kl" not in scored and "rewards/says_blue/mean" in scored
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    tokenizer = load_tokenizer(ModelConfig(model_name_or_path=sky["policy"]))
    template = get_template("qwen3_nothink", tokenizer)
    stop = template.stop_token_ids()
    for call in calls:
        assert len(call["prompts"]) == 4 and len(set(call["prompts"])) == 1  # one group: a prompt, 4 answers
        assert call["prompts"][0].endswith("<|im_start|>assistant\n") and call["reference"][0] in ("Blue.", "Green.")
        for ids in call["ids"]:
            assert len(ids) <= 8 and not any(i in stop for i in ids[:-1])  # ends at the first stop token


def test_steps_per_generation_holds_whole_groups():
    from tuneforge.stages.online_common import steps_per_generation

    assert steps_per_generation(16, 1, 4) == 1
    assert steps_per_generation(1, 8, 4) == 8
    assert steps_per_generation(2, 1, 4) == 2
    assert steps_per_generation(2, 3, 4) == 4
    assert steps_per_generation(3, 1, 4) == 4


@pytest.mark.parametrize("spec, message", [
    ("no_colon", "write module:function"),
    ("tuneforge_no_such_module:f", "importing tuneforge_no_such_module failed"),
    ("json:no_such_function", "json has no function 'no_such_function'"),
    ("/nowhere/rewards.py:f", "no file"),
])
def test_reward_funcs_mistakes_are_config_errors(spec, message):
    from tuneforge.config.errors import ConfigError
    from tuneforge.stages.online_common import import_reward_func

    with pytest.raises(ConfigError, match=message):
        import_reward_func(spec)


def test_no_reward_is_a_config_error(tmp_path):
    from tuneforge.config.errors import ConfigError

    with pytest.raises(ConfigError, match="stage rloo needs a reward"):
        train(tmp_path, stage="rloo", max_steps=1)


@pytest.mark.parametrize("keys, message", [
    ({}, "needs a reward"),
    ({"reward_funcs": "json:dumps", "ref_model": "some/model"}, "takes no ref_model"),
    ({"reward_funcs": "json:dumps", "temperature": 0}, "temperature must be above 0"),
])
def test_online_checks_need_no_weights(keys, message, tmp_path):
    from tuneforge.config.errors import ConfigError
    from tuneforge.config.load import load
    from tuneforge.stages import grpo

    base = {"model_name_or_path": "not/downloaded", "stage": "grpo", "dataset": "identity",
            "output_dir": str(tmp_path)}
    cfg, _ = load(base={**base, **keys})
    with pytest.raises(ConfigError, match=message):
        grpo.check(cfg)
    cfg, _ = load(base={**base, "reward_funcs": "json:dumps"})
    assert [f.__name__ for f in grpo.check(cfg)] == ["dumps"]
