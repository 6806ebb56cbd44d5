"""stage kto: trl's KTOTrainer on our pre-tokenized rows; loss falls on kto_demo and LLaMA-Factory's kto_en_demo."""

from __future__ import annotations

import json
import time

import pytest

from conftest import LF_DATA, assert_one_error_line, need_shared, run_cli, write_yaml
from e2e.helpers import log_lines, train

KTO = dict(stage="kto", dataset="kto_demo", cutoff_len=128, per_device_train_batch_size=4, max_samples=12,
           num_train_epochs=4, learning_rate=5e-3, lr_scheduler_type="constant", logging_steps=1, pref_beta=0.1)


def losses(out) -> list[float]:
    return [r["loss"] for r in log_lines(out) if "loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["kto_demo", "kto_en_demo"])
def test_kto_loss_falls(dataset, tmp_path):
    started = time.time()
    keys = dict(KTO, dataset=dataset)
    if dataset == "kto_en_demo":  # LLaMA-Factory's file and dataset_info.json, unchanged
        need_shared()
        keys["dataset_dir"] = str(LF_DATA)
    out = train(tmp_path, **keys)
    lines = log_lines(out)
    loss = losses(out)
    print(f"kto {dataset}: loss {loss[0]:.4f} -> {loss[-1]:.4f}, rewards/margins "
          f"{lines[-1].get('rewards/margins')}, kl {lines[-1].get('kl')}; {time.time() - started:.1f}s")
    assert len(loss) == 12
    assert loss[0] == pytest.approx(0.5, abs=1e-4)  # the policy starts as its reference: 1 - sigmoid(0)
    assert max(loss[-3:]) < 0.25, loss
    assert {"rewards/chosen", "rewards/rejected", "kl", "logps/chosen"} <= {k for r in lines for k in r}
    margins = [r["rewards/margins"] for r in lines if "rewards/margins" in r]
    assert margins[-1] > 1.0, margins
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "training_loss.png", "training_rewards_margins.png",
            "all_results.json"} <= names
    assert "ref" not in names  # the reference is the disabled adapter, not a saved second adapter


def _trainer(cfg_keys: dict, tmp_path):
    """Our KTO trainer as the stage builds it, on the tiny model and kto_demo."""
    from tuneforge.config.load import load
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.templates import get_template
    from tuneforge.model.adapters import apply_method
    from tuneforge.model.load import choose_precision, load_model, load_tokenizer
    from tuneforge.stages.kto import _trainer_class
    from tuneforge.stages.trl_shared import trl_config
    from tuneforge.train.arguments import training_arguments
    from trl import KTOConfig

    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink",
                        "output_dir": str(tmp_path / "out"), "report_to": "none", **cfg_keys})
    tokenizer = load_tokenizer(cfg.model)
    template = get_template(cfg.data.template, tokenizer)
    data = build_datasets(cfg.data, template, "kto")
    precision = choose_precision(cfg.train, cfg.method.finetuning_type)
    model = apply_method(load_model(cfg.model, precision, attn_implementation=None), cfg.method, cfg.model)
    args = trl_config(KTOConfig, training_arguments(cfg, precision, has_eval=False), max_length=None,
                      train_sampling_strategy="sequential")
    trainer = _trainer_class()(model=model, args=args, train_dataset=data.train.remove_columns(["full_len"]),
                               processing_class=tokenizer)
    return trainer, data.train, template


def test_rows_reach_trl_as_we_encoded_them(tiny_path, tmp_path):
    """No re-tokenizing, no second eos; KL pairs rotate over the whole dataset; the ref adapter copy is dropped."""
    from tuneforge.model.adapters import count_parameters

    trainer, ours, template = _trainer({"stage": "kto", "dataset": "kto_demo", "per_device_train_batch_size": 4,
                                        "cutoff_len": 128}, tmp_path)
    prepared = trainer.train_dataset
    assert len(prepared) == len(ours) == 40
    key = lambda p, c, label: (tuple(p), tuple(c), label)  # noqa: E731
    assert sorted(map(key, prepared["prompt_ids"], prepared["completion_ids"], prepared["label"])) == \
        sorted(map(key, ours["prompt_ids"], ours["completion_ids"], ours["label"]))
    assert prepared["completion_ids"] != ours["completion_ids"]  # shuffled once: pairs no longer side by side
    stop = template.stop_token_ids()[0]
    for completion in prepared["completion_ids"]:
        assert completion[-1] == stop and completion.count(stop) == 1
    answers = prepared["completion_ids"]
    assert prepared["KL_completion_ids"] == answers[-1:] + answers[:-1]
    batch = trainer.data_collator([prepared[0], prepared[1]])
    row = prepared[0]
    assert batch["input_ids"][0, :len(row["prompt_ids"]) + len(row["completion_ids"])].tolist() == \
        row["prompt_ids"] + row["completion_ids"]
    assert set(trainer.model.peft_config) == {"default"}
    lora = sum(p.numel() for n, p in trainer.model.named_parameters() if "lora_" in n)
    assert count_parameters(trainer.model)[0] == lora  # one adapter's worth of trainable weights, no copy


@pytest.mark.slow
def test_pref_ftx_adds_the_sft_loss(tmp_path):
    out = train(tmp_path, **dict(KTO, max_steps=1, pref_ftx=0.5))
    first = log_lines(out)[0]
    # at step 1 the policy equals its reference, so the KTO part is exactly 0.5
    assert first["sft_loss"] > 1.0
    assert first["loss"] == pytest.approx(0.5 + 0.5 * first["sft_loss"], rel=1e-4)


@pytest.mark.slow
def test_batch_size_one_takes_its_kl_answer_from_another_sample(tmp_path, monkeypatch):
    """LLaMA-Factory's KTO example trains with per_device_train_batch_size 1: each one-row batch still reaches the
    model's KL pass with a different sample's answer (not its own), and training runs."""
    from trl import KTOTrainer

    seen: list[tuple[list[int], list[int]]] = []
    original = KTOTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        assert inputs["input_ids"].shape[0] == 1
        answer = inputs["input_ids"][inputs["completion_mask"] == 1].tolist()
        kl_answer = inputs["KL_input_ids"][inputs["KL_completion_mask"] == 1].tolist()
        seen.append((answer, kl_answer))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(KTOTrainer, "compute_loss", spy)
    out = train(tmp_path, **dict(KTO, per_device_train_batch_size=1, gradient_accumulation_steps=2, max_steps=2))
    assert len(seen) == 4 and len(losses(out)) == 2
    for answer, kl_answer in seen:
        assert kl_answer and kl_answer != answer  # the KL pass reads another sample's answer
    answers = [answer for answer, _ in seen]
    assert [kl for _, kl in seen[1:]] == answers[:-1]  # the previous sample's, in the order trained


def test_kto_tag_not_boolean_is_one_line_through_the_cli(tiny_path, tmp_path):
    tagged = [("Hi", "Hello!", True), ("2+2?", "5", False), ("Sky?", "Blue.", "yes")]  # record 2 (0-based) is bad
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "label": label}
            for q, a, label in tagged]
    data = tmp_path / "data"
    data.mkdir()
    (data / "tags.json").write_text(json.dumps(rows), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({"tags": {
        "file_name": "tags.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}))
    config = write_yaml(tmp_path / "kto.yaml", model_name_or_path="tuneforge/tiny", template="qwen3_nothink", do_train=True,
                        stage="kto", dataset="tags", dataset_dir=str(data), output_dir=str(tmp_path / "out"),
                        per_device_train_batch_size=2, max_steps=1)
    result = run_cli("train", str(config), cwd=tmp_path)
    assert_one_error_line(result, "tags.json", "record 2", "'label'", "true or false", "'yes'")
    assert not (tmp_path / "out").exists()
