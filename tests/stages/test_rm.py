"""stage rm: a value head learns a systematic preference; the saved model scores through load_reward_scorer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from e2e.helpers import log_lines, train

EN_TOPICS = ["the weather", "green tea", "a good book", "the river", "music", "cooking rice", "my cat", "the train",
             "math homework", "the garden", "the moon", "coffee"]
ZH_TOPICS = ["天气", "绿茶", "一本好书", "这条河", "音乐", "做米饭",
             "我的猫", "火车", "数学作业", "花园", "月亮", "咖啡"]


def polite_pairs() -> list[dict]:
    """Chosen: a polite answer in the question's language.
    Rejected: always the same curt line, in the other language."""
    rows = []
    for en, zh in zip(EN_TOPICS, ZH_TOPICS):
        for ask in ("Can you tell me about {}?", "What do you think of {}?"):
            rows.append({"instruction": ask.format(en), "input": "",
                         "chosen": f"Of course, thank you for asking! {en.capitalize()} is lovely.",
                         "rejected": "不知道。走开。"})
        for ask in ("请介绍一下{}。", "你觉得{}怎么样？"):
            rows.append({"instruction": ask.format(zh), "input": "",
                         "chosen": f"当然可以，谢谢你的提问！{zh}很好。", "rejected": "No. Go away."})
    return rows


def write_pref_dataset(folder: Path, name: str, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    info_path = folder / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info[name] = {"file_name": f"{name}.json", "ranking": True,
                  "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}}
    info_path.write_text(json.dumps(info))
    return folder


RM = dict(stage="rm", dataset="polite", cutoff_len=64, per_device_train_batch_size=8, per_device_eval_batch_size=8,
          logging_steps=2, learning_rate=5e-3, num_train_epochs=2, val_size=8)  # evaluated once, at the end


def scorer_for(out: Path, kind: str):
    from tuneforge.config.load import load
    from tuneforge.data.templates import template_for
    from tuneforge.model.load import choose_precision, load_tokenizer
    from tuneforge.model.reward import load_reward_scorer

    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink", "do_train": False,
                        "reward_model": str(out), "reward_model_type": kind})
    template = template_for(cfg.data, load_tokenizer(cfg.model))
    precision = choose_precision(cfg.train, cfg.method.finetuning_type)
    return load_reward_scorer(cfg.pref, cfg.model, template, precision, attention=None)


def prompt_text(question: str) -> str:
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.slow
def test_lora_rm_learns_preference_and_scores_through_loader(tmp_path):
    started = time.time()
    data = write_pref_dataset(tmp_path / "data", "polite", polite_pairs())
    out = train(tmp_path, dataset_dir=str(data), **RM)
    results = json.loads((out / "all_results.json").read_text())
    print(f"rm lora: eval_accuracy {results['eval_accuracy']}, train {time.time() - started:.1f}s")
    assert results["eval_accuracy"] >= 0.9
    assert any("accuracy" in line for line in log_lines(out))  # the stage metric rides in trainer_log.jsonl
    for png in ("training_loss.png", "training_accuracy.png", "training_eval_accuracy.png"):
        assert (out / png).is_file(), png
    # the value head is saved with the LoRA weights, in safetensors
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        assert any(key.endswith("score.weight") for key in f.keys())
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "SEQ_CLS"

    scorer = scorer_for(out, "lora")
    prompts = [prompt_text("Can you tell me about the stars?"), prompt_text("请介绍一下星星。")]
    chosen = scorer(prompts, ["Of course, thank you for asking! The stars are lovely.",
                              "当然可以，谢谢你的提问！星星很好。"])
    rejected = scorer(prompts, ["不知道。走开。", "No. Go away."])
    assert all(c > r for c, r in zip(chosen, rejected)), (chosen, rejected)
    # token batches: left padding gives the same scores as one sequence at a time
    import torch

    ids = [scorer.tokenizer(p + c + "<|im_end|>", add_special_tokens=False)["input_ids"]
           for p, c in zip(prompts, ["不知道。走开。", "No. Go away."])]
    width = max(map(len, ids))
    batch = torch.tensor([[scorer.pad_id] * (width - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    assert torch.allclose(scorer.score_ids(batch, mask), torch.tensor(rejected), atol=1e-4)
    print(f"rm lora test: {time.time() - started:.1f}s")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "freeze"])
def test_full_and_freeze_rm_save_a_loadable_reward_model(method, tmp_path):
    started = time.time()
    data = write_pref_dataset(tmp_path / "data", "polite", polite_pairs())
    keys = {**RM, "val_size": 0, "learning_rate": 1e-3, "num_train_epochs": 1}
    out = train(tmp_path, dataset_dir=str(data), **keys, finetuning_type=method, freeze_trainable_layers=1)
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["architectures"][0].endswith("ForSequenceClassification")
    scorer = scorer_for(out, "full")
    assert len(scorer([prompt_text("hi")], ["hello"])) == 1
    print(f"rm {method} test: {time.time() - started:.1f}s")


def test_rm_on_a_non_preference_dataset_is_one_line(tmp_path):
    from tuneforge.config.errors import DataError

    with pytest.raises(DataError, match="stage rm needs preference pairs") as info:
        train(tmp_path, stage="rm", dataset="identity")
    assert "\n" not in str(info.value)


def test_reward_model_folder_mistakes_are_one_line(tmp_path):
    from tuneforge.config.errors import ConfigError

    sft_adapter = tmp_path / "sft"
    sft_adapter.mkdir()
    (sft_adapter / "adapter_config.json").write_text(json.dumps({"task_type": "CAUSAL_LM"}))
    for folder, kind, message in [(tmp_path / "missing", "lora", "does not exist"),
                                  (sft_adapter, "lora", "not a reward model"),
                                  (sft_adapter, "full", "set reward_model_type: lora")]:
        with pytest.raises(ConfigError, match=message) as info:
            scorer_for(folder, kind)
        assert "\n" not in str(info.value)
