"""stage dpo on the tiny model (CPU): sigmoid/ipo/hinge through trl's DPOTrainer, orpo/simpo without a reference.

The toy set pairs a correct, plainly worded sum ("3 plus 4 is 7.") with an evasive wrong one ("No idea, maybe
8?"), so chosen and rejected differ systematically and a few LoRA steps separate them. Each training test
trains on it for 8 steps and then evaluates on the same pairs (eval_dataset = the training set), so the
eval_rewards/* numbers are over every training pair, not one batch.
"""

from __future__ import annotations

import gc
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import LF_DATA, assert_one_error_line, need_shared, run_cli, write_yaml
from e2e.helpers import log_lines, train

TOY = [{"instruction": f"What is {a} plus {b}?", "input": "", "chosen": f"{a} plus {b} is {a + b}.",
        "rejected": f"No idea, maybe {a + b + 1}?"} for a in range(1, 5) for b in range(2, 6)]
TOY_INFO = {"toy": {"file_name": "toy.json", "ranking": True,
                    "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}}}
# 8 steps of 4 pairs = 2 epochs of the 16 toy pairs
TOY_RUN = dict(stage="dpo", dataset="toy", eval_dataset="toy", eval_strategy="no", finetuning_type="lora",
               lora_rank=8, learning_rate=5e-3, max_steps=8, logging_steps=2, per_device_train_batch_size=4,
               per_device_eval_batch_size=16, cutoff_len=64)
WALL: dict[str, float] = {}  # test -> seconds, printed at the end of the module (pytest -s)


def toy_dir(tmp: Path) -> Path:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "toy.json").write_text(json.dumps(TOY), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps(TOY_INFO), encoding="utf-8")
    return data


def live_parameters() -> dict[int, object]:
    """Every torch Parameter alive in this process (held, so ids can't be reused while we compare)."""
    import torch

    gc.collect()
    # type(), not isinstance(): the latter reads __class__ of every object, waking deprecated lazy attributes
    return {id(o): o for o in gc.get_objects() if type(o) is torch.nn.Parameter}


@pytest.fixture
def spy(monkeypatch):
    """When a dpo trainer starts training, records it and the number of parameters that came alive since the
    test began: the policy alone, or the policy plus a reference model if one was loaded."""
    from tuneforge.stages import dpo

    before = live_parameters()
    seen: dict = {}

    def watch(cls):
        original = cls.train

        def spying_train(self, *args, **kwargs):
            now = live_parameters()
            seen["trainer"] = self
            seen["new_params"] = sum(p.numel() for i, p in now.items() if i not in before)
            seen["policy_params"] = sum(p.numel() for p in self.model.parameters())
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "train", spying_train)

    watch(dpo.PretokenizedDPOTrainer)
    watch(dpo.ReferenceFreeTrainer)
    yield seen
    seen.clear()


@pytest.fixture(autouse=True)
def _wall_time(request):
    start = time.perf_counter()
    yield
    WALL[request.node.name] = round(time.perf_counter() - start, 1)


@pytest.fixture(scope="module", autouse=True)
def _report_wall_times():
    yield
    if WALL:
        print("\nwall time per test (s):", json.dumps(WALL, indent=1))


def toy_train(tmp: Path, **keys) -> tuple[Path, list[dict], dict]:
    out = train(tmp, **{**TOY_RUN, "dataset_dir": str(toy_dir(tmp)), **keys})
    lines = log_lines(out)
    train_lines = [r for r in lines if "loss" in r]
    final = json.loads((out / "all_results.json").read_text())
    return out, train_lines, final


def assert_learned(train_lines: list[dict], final: dict) -> None:
    margins = [r["rewards/margins"] for r in train_lines]
    print(f"margins {margins[0]:.3f} -> {margins[-1]:.3f}, train accuracy {train_lines[-1]['rewards/accuracies']},"
          f" eval accuracy {final['eval_rewards/accuracies']}, eval margin {final['eval_rewards/margins']:.3f}")
    assert margins[-1] > margins[0] + 0.5
    assert train_lines[-1]["rewards/accuracies"] >= 0.9
    assert final["eval_rewards/accuracies"] >= 0.9  # every training pair, after training
    assert final["eval_rewards/margins"] > 0.5


# -- no training ------------------------------------------------------------------------------------------------

def cfg_of(**keys):
    from tuneforge.config.load import load

    base = {"model_name_or_path": "tuneforge/tiny", "stage": "dpo", "dataset": "preference_demo",
            "template": "qwen3_nothink", "output_dir": "out"}
    return load(base={**base, **keys})[0]


def test_contradicting_settings_are_refused_before_weights_load():
    from tuneforge.config.errors import ConfigError
    from tuneforge.stages import dpo

    with pytest.raises(ConfigError, match="pref_loss orpo uses no reference model"):
        dpo.check(cfg_of(pref_loss="orpo", ref_model="tuneforge/tiny"))
    with pytest.raises(ConfigError, match="dpo_label_smoothing applies to pref_loss sigmoid"):
        dpo.check(cfg_of(pref_loss="ipo", dpo_label_smoothing=0.1))
    with pytest.raises(ConfigError, match="must be below 0.5"):
        dpo.check(cfg_of(dpo_label_smoothing=0.5))
    with pytest.raises(ConfigError, match="ref_model_adapters needs ref_model"):
        dpo.check(cfg_of(ref_model_adapters="some/adapter"))
    dpo.check(cfg_of(pref_loss="simpo", simpo_gamma=1.0, pref_ftx=0.5))
    dpo.check(cfg_of(dpo_label_smoothing=0.1, ref_model="tuneforge/tiny"))


def test_loss_terms_for_trl():
    import torch
    import torch.nn.functional as F

    from tuneforge.stages import dpo

    pref = cfg_of(pref_loss="hinge", pref_ftx=0.3).pref
    assert dpo.dpo_loss_terms(pref) == (["hinge", "sft"], [1.0, 0.3])
    assert dpo.dpo_loss_terms(cfg_of().pref) == (["sigmoid"], [1.0])
    # cDPO from trl's "sigmoid" and "robust" terms (their formulas in trl 1.16's DPOTrainer._compute_loss)
    eps, beta = 0.2, 0.1
    types, weights = dpo.dpo_loss_terms(cfg_of(dpo_label_smoothing=eps).pref)
    assert types == ["sigmoid", "robust"]
    delta = torch.linspace(-30, 30, 41)
    clean, flipped = -(1 - eps) * F.logsigmoid(beta * delta), -eps * F.logsigmoid(-beta * delta)
    trl_terms = {"sigmoid": -F.logsigmoid(beta * delta), "robust": (clean - flipped) / (1 - 2 * eps)}
    combined = sum(w * trl_terms[t] for t, w in zip(types, weights))
    conservative = -(1 - eps) * F.logsigmoid(beta * delta) - eps * F.logsigmoid(-beta * delta)
    torch.testing.assert_close(combined, conservative)


def test_reference_free_losses_match_trl_experimental():
    """Our ORPO and SimPO losses equal trl.experimental's (ORPOTrainer, CPOTrainer loss_type simpo)."""
    import torch
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    from tuneforge.stages import dpo

    chosen = torch.tensor([-0.3, -1.2, -2.5, -0.01])
    rejected = torch.tensor([-0.9, -1.0, -4.0, -0.02])
    cpu = SimpleNamespace(device="cpu")
    beta = 0.25
    losses, extra = dpo.reference_free_losses("orpo", chosen, rejected, beta, 0.0, 0.0)
    trl_terms, *_ = ORPOTrainer.odds_ratio_loss(SimpleNamespace(beta=beta, accelerator=cpu), chosen, rejected)
    # trl: loss = NLL(chosen) - mean(beta * logsigmoid(log odds)); ours per pair: NLL + beta * -logsigmoid(...)
    torch.testing.assert_close(losses - extra["nll_loss"], -trl_terms)
    stub = SimpleNamespace(beta=2.0, simpo_gamma=0.7, loss_type="simpo", label_smoothing=0.0, alpha=0.0,
                           accelerator=cpu)
    losses, _ = dpo.reference_free_losses("simpo", chosen, rejected, 2.0, 0.7, 0.0)
    trl_losses, *_ = CPOTrainer.cpo_loss(stub, chosen, rejected)
    torch.testing.assert_close(losses, trl_losses)
    with_ftx, _ = dpo.reference_free_losses("simpo", chosen, rejected, 2.0, 0.7, 0.5)
    torch.testing.assert_close(with_ftx - losses, 0.5 * -chosen)  # pref_ftx adds the NLL term


def test_builtin_preference_demos_encode(tiny_tokenizer):
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.templates import get_template

    stop = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    template = get_template("qwen3_nothink", tiny_tokenizer)
    for name in ("preference_demo", "preference_sharegpt_demo"):
        cfg = cfg_of(dataset=name, cutoff_len=1024)
        data = build_datasets(cfg.data, template, "dpo")
        assert len(data.train) == 40 and data.dropped == 0
        for row in data.train:
            for answer in (row["chosen_ids"], row["rejected_ids"]):
                assert answer[-1] == stop and answer.count(stop) == 1
            assert row["chosen_ids"] != row["rejected_ids"]
        texts = [tiny_tokenizer.decode(r["prompt_ids"]) for r in data.train]
        assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in texts) >= 15  # bilingual
        if name == "preference_sharegpt_demo":
            assert sum(t.count("<|im_start|>user") > 1 for t in texts) >= 10  # multi-turn histories


# -- bad input through the CLI ----------------------------------------------------------------------------------

BAD = {
    "missing_rejected": ("alpaca", [{"instruction": "Hi", "input": "", "chosen": "Hello!", "rejected": "Go away."},
                                    {"instruction": "Add 1 and 2", "input": "", "chosen": "3"}],
                         ("bad.json", "record 1", "'rejected'")),
    "chosen_equals_rejected": ("alpaca", [{"instruction": "Hi", "input": "", "chosen": "Hello!", "rejected": "Go."},
                                          {"instruction": "Name a colour", "chosen": "Blue", "rejected": "Blue"}],
                               ("bad.json", "record 1", "'chosen'", "same answer")),
    "sharegpt_ends_on_assistant": ("sharegpt", [
        {"conversations": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt", "value": "Hello!"},
         "rejected": {"from": "gpt", "value": "Go away."}},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}],
         "chosen": {"from": "gpt", "value": "How can I help?"}, "rejected": {"from": "gpt", "value": "What?"}}],
        ("bad.json", "record 1", "'conversations'", "must end with a user turn")),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """All bad-input CLI runs at once (each is a fresh `python -m tuneforge` process, mostly imports)."""
    def run(name: str):
        formatting, records, _ = BAD[name]
        root = tmp_path_factory.mktemp(name)
        (root / "bad.json").write_text(json.dumps(records), encoding="utf-8")
        first = {"prompt": "instruction", "query": "input"} if formatting == "alpaca" else {"messages": "conversations"}
        columns = {**first, "chosen": "chosen", "rejected": "rejected"}
        info = {"bad": {"file_name": "bad.json", "ranking": True, "formatting": formatting, "columns": columns}}
        (root / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
        cfg = write_yaml(root / "train.yaml", model_name_or_path="tuneforge/tiny", stage="dpo", dataset="bad", do_train=True,
                         dataset_dir=str(root), template="qwen3_nothink", output_dir=str(root / "out"),
                         max_steps=1, report_to="none")
        return run_cli("train", str(cfg), cwd=root, timeout=300), root

    tmp_path_factory.getbasetemp()  # made once here: threads making it at once race (a file run on its own failed)
    with ThreadPoolExecutor(len(BAD)) as pool:
        return dict(zip(BAD, pool.map(run, BAD)))


@pytest.mark.parametrize("case", list(BAD))
def test_bad_preference_record_is_one_line(case, bad_runs):
    proc, root = bad_runs[case]
    assert_one_error_line(proc, *BAD[case][2])
    assert not (root / "out" / "trainer_log.jsonl").exists()


# -- training ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_dpo_sigmoid_lora_learns_without_a_second_copy(tmp_path, spy, tiny_tokenizer):
    out, lines, final = toy_train(tmp_path)
    assert_learned(lines, final)
    assert lines[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at the first step
    trainer = spy["trainer"]
    # LoRA: the reference is the base with the adapter disabled; nothing but the policy came alive
    assert trainer.ref_model is None and "ref" not in trainer.model.peft_config
    assert spy["new_params"] == spy["policy_params"]
    assert not (out / "ref").exists() and (out / "adapter_model.safetensors").is_file()
    # the pre-tokenized pairs reach the model as they are: no prompt re-extraction, no EOS appended
    row = trainer.train_dataset[0]
    batch = trainer.data_collator([row])  # rows: [chosen, rejected], right-padded to the longer one
    for i, answer in enumerate((row["chosen_ids"], row["rejected_ids"])):
        real = batch["attention_mask"][i].bool()
        assert batch["input_ids"][i][real].tolist() == row["prompt_ids"] + answer
        completion = batch["completion_mask"][i][real].tolist()
        assert completion == [0] * len(row["prompt_ids"]) + [1] * len(answer)
        assert answer[-1] == tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"):
        assert key in lines[-1]
    assert (out / "training_loss.png").is_file() and (out / "training_rewards_accuracies.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("loss,method,keys", [
    ("orpo", "lora", dict(pref_beta=0.5)),
    ("simpo", "full", dict(pref_beta=2.0, simpo_gamma=0.5, learning_rate=1e-3)),
], ids=["orpo-lora", "simpo-full"])
def test_reference_free_losses_learn(loss, method, keys, tmp_path, spy):
    out, lines, final = toy_train(tmp_path, pref_loss=loss, finetuning_type=method, **keys)
    assert_learned(lines, final)
    assert not hasattr(spy["trainer"], "ref_model")
    assert spy["new_params"] == spy["policy_params"]  # no reference model, even for full fine-tuning
    assert (out / "training_rewards_accuracies.png").is_file()
    if loss == "orpo":
        assert "log_odds_ratio" in lines[-1] and "nll_loss" in lines[-1]


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ipo", "hinge"])
def test_ipo_and_hinge_run_and_their_loss_falls(loss, tmp_path):
    out, lines, final = toy_train(tmp_path, pref_loss=loss, max_steps=6, eval_dataset=None)
    print(f"{loss}: loss {lines[0]['loss']:.4f} -> {lines[-1]['loss']:.4f}, "
          f"accuracy {lines[-1]['rewards/accuracies']}, margin {lines[-1]['rewards/margins']:.3f}")
    assert lines[-1]["loss"] < lines[0]["loss"] * 0.8
    assert lines[-1]["rewards/margins"] > lines[0]["rewards/margins"]


@pytest.mark.slow
def test_pref_ftx_adds_the_sft_term(tmp_path):
    one_step = dict(max_steps=1, logging_steps=1, eval_dataset=None, plot_loss=False)
    _, plain, _ = toy_train(tmp_path / "plain", **one_step)
    _, with_sft, _ = toy_train(tmp_path / "ftx", pref_ftx=1.0, **one_step)
    _, smoothed, _ = toy_train(tmp_path / "cdpo", dpo_label_smoothing=0.2, **one_step)
    # step 1: policy == reference, so the sigmoid term is exactly log 2; pref_ftx adds the chosen answers' NLL
    assert plain[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert with_sft[0]["loss"] > math.log(2) + 1.0
    # conservative DPO (trl's sigmoid and robust terms combined) is log 2 there too, whatever the smoothing
    assert smoothed[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    print(f"first loss {plain[0]['loss']:.4f} without pref_ftx, {with_sft[0]['loss']:.4f} with pref_ftx 1.0")


@pytest.mark.slow
def test_full_finetuning_loads_a_frozen_reference(tmp_path, spy):
    train(tmp_path, **{**TOY_RUN, "dataset_dir": str(toy_dir(tmp_path)), "finetuning_type": "full",
                       "max_steps": 2, "eval_dataset": None, "learning_rate": 1e-4})
    ref = spy["trainer"].ref_model
    assert ref is not None and not any(p.requires_grad for p in ref.parameters())
    assert spy["new_params"] == 2 * spy["policy_params"]  # the policy and one frozen copy of the base


@pytest.mark.slow
def test_explicit_ref_model_with_adapters(tmp_path, spy, tiny_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "ref_adapter"
    base = AutoModelForCausalLM.from_pretrained(tiny_path)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False)).save_pretrained(adapter)
    del base
    train(tmp_path, **{**TOY_RUN, "dataset_dir": str(toy_dir(tmp_path)), "max_steps": 2, "eval_dataset": None,
                       "ref_model": str(tiny_path), "ref_model_adapters": str(adapter)})
    trainer = spy["trainer"]
    ref = trainer.ref_model
    assert ref is not None and not any(p.requires_grad for p in ref.parameters())
    ref_params = sum(p.numel() for p in ref.parameters())
    assert spy["new_params"] == spy["policy_params"] + ref_params  # the adapter is merged into the reference
    assert "ref" not in trainer.model.peft_config


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["dpo_en_demo", "dpo_zh_demo", "preference_sharegpt_demo"])
def test_demo_datasets_train(dataset, tmp_path):
    keys = dict(stage="dpo", dataset=dataset, max_samples=8, cutoff_len=128, max_steps=2, logging_steps=1,
                per_device_train_batch_size=2, learning_rate=1e-4)
    if dataset.startswith("dpo_"):
        need_shared()
        keys["dataset_dir"] = str(LF_DATA)  # LLaMA-Factory's files and dataset_info.json, unchanged
    out = train(tmp_path, **keys)
    lines = [r for r in log_lines(out) if "loss" in r]
    assert [r["current_steps"] for r in lines] == [1, 2]
    assert all("rewards/accuracies" in r and "rewards/margins" in r for r in lines)
