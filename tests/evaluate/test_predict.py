"""`tuneforge predict` and train's do_predict: samples, batching, files, and BLEU/ROUGE that rise
when the tiny model has learned the identity set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import assert_one_error_line, run_cli, write_yaml
from e2e.helpers import TINY_SFT
from tuneforge.config.errors import ConfigError
from tuneforge.config.load import load
from tuneforge.evaluate import predict
from tuneforge.infer.base import Response

RESULT_KEYS = {"predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l", "predict_runtime",
               "predict_samples_per_second", "predict_steps_per_second", "predict_tokens_per_second"}
RECORDS = [
    {"instruction": "q1", "output": "alpha beta", "system": "S1"},
    {"instruction": "q2", "output": "gamma", "system": "S2"},
    {"instruction": "q3", "output": "delta epsilon", "system": "S1", "history": [["h", "hh"]]},
]
ANSWERS = {"q1": "alpha beta", "q2": "", "q3": "delta epsilon"}  # exact, empty, exact


class FakeEngine:
    tokenizer = None

    def __init__(self):
        self.calls: list[tuple[str | None, list[str], int]] = []

    def prompt_text(self, messages, system=None, tools=None):
        return f"[{system}] " + " | ".join(m.content for m in messages)

    def batch_generate(self, conversations, system=None, batch_size=8, **overrides):
        self.calls.append((system, [c[-1].content for c in conversations], batch_size))
        return [ANSWERS[c[-1].content] for c in conversations]

    def generate(self, messages, system=None, tools=None, n=1, **overrides):
        return [Response(ANSWERS[messages[-1].content], 0, 0, "stop")]


def mini_config(tmp_path: Path, **keys):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "mini.json").write_text(json.dumps(RECORDS))
    columns = {"system": "system", "history": "history"}
    (data / "dataset_info.json").write_text(json.dumps({"mini": {"file_name": "mini.json", "columns": columns}}))
    base = {"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink", "do_train": False,
            "eval_dataset": "mini", "dataset_dir": str(data), "output_dir": str(tmp_path / "out"),
            "per_device_eval_batch_size": 2, **keys}
    return load(base={k: v for k, v in base.items() if v is not None})[0]


def test_samples_batches_files_and_scores(tmp_path, caplog):
    engine = FakeEngine()
    with caplog.at_level("INFO", logger="tuneforge"):
        result = predict.run_prediction(mini_config(tmp_path), engine=engine)
    assert "predict: 3 samples (mini: 3), batch size 2" in caplog.messages
    # grouped by system prompt, in dataset order within a group, batch size from per_device_eval_batch_size
    assert engine.calls == [("S1", ["q1", "q3"], 2), ("S2", ["q2"], 2)]
    lines = (tmp_path / "out" / "generated_predictions.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows == [  # dataset order; prompt = all messages but the last answer; label = the last answer
        {"prompt": "[S1] q1", "predict": "alpha beta", "label": "alpha beta"},
        {"prompt": "[S2] q2", "predict": "", "label": "gamma"},
        {"prompt": "[S1] h | hh | q3", "predict": "delta epsilon", "label": "delta epsilon"},
    ]
    metrics = json.loads((tmp_path / "out" / "predict_results.json").read_text())
    assert set(metrics) == RESULT_KEYS
    # two exact matches (100 on every score) and one empty prediction (0): mean 200 / 3 = 66.6667
    for name in ("bleu-4", "rouge-1", "rouge-2", "rouge-l"):
        assert metrics[f"predict_{name}"] == pytest.approx(66.6667, abs=1e-4)
    assert metrics["predict_samples_per_second"] > 0 and metrics == result.metrics
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["generated_predictions.jsonl",
                                                                    "predict_results.json"]


def test_train_command_switches(tmp_path):
    with pytest.raises(ConfigError, match="nothing to do"):
        predict.maybe_predict(mini_config(tmp_path))
    with pytest.raises(ConfigError, match="predict_with_generate"):
        predict.maybe_predict(mini_config(tmp_path, do_predict=True))
    trained = mini_config(tmp_path, do_train=True, dataset="mini")
    predict.maybe_predict(trained)  # do_predict off: training only, nothing predicted
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="'eval_dataset'"):
        predict.check_predict(mini_config(tmp_path, do_train=True, dataset="mini", eval_dataset=None))
    # do_train false: LLaMA-Factory's older examples predict on `dataset`
    assert predict.eval_dataset_names(mini_config(tmp_path, dataset="mini", eval_dataset=None)) == ["mini"]
    with pytest.raises(ConfigError, match="'output_dir' is required"):
        predict.check_predict(mini_config(tmp_path, output_dir=None))


def test_model_after_training(tmp_path):
    out = str(tmp_path / "out")
    lora = predict.model_after_training(mini_config(tmp_path, do_train=True, dataset="mini"))
    assert lora.adapter_name_or_path == [out]
    old = [str(tmp_path / "a1"), str(tmp_path / "a2")]
    cont = predict.model_after_training(mini_config(tmp_path, do_train=True, dataset="mini",
                                                    adapter_name_or_path=",".join(old)))
    assert cont.adapter_name_or_path == [old[0], out]  # training continued a2; out holds it now
    new = predict.model_after_training(mini_config(tmp_path, do_train=True, dataset="mini", create_new_adapter=True,
                                                   adapter_name_or_path=",".join(old)))
    assert new.adapter_name_or_path == old + [out]
    full = predict.model_after_training(mini_config(tmp_path, do_train=True, dataset="mini", finetuning_type="full"))
    assert full.model_name_or_path == out and full.adapter_name_or_path is None


def test_cli_error_is_one_line(tmp_path):
    cfg = write_yaml(tmp_path / "p.yaml", model_name_or_path="tuneforge/tiny", template="qwen3_nothink",
                     output_dir=str(tmp_path / "out"))
    proc = run_cli("predict", str(cfg), cwd=tmp_path, timeout=120)
    assert_one_error_line(proc, "'eval_dataset'")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ the tiny model
PREDICT_KEYS = {"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink", "eval_dataset": "identity",
                "identity_name": "Forge", "identity_author": "Tuneforge Lab", "do_sample": False,
                "max_new_tokens": 32, "per_device_eval_batch_size": 40}


@pytest.fixture
def trained(identity_adapter, tmp_path) -> Path:
    """A private copy of the session's identity adapter (conftest: train(..., finetuning_type="lora",
    lora_rank=16, learning_rate=5e-3, num_train_epochs=15)): the after-training path writes into it."""
    return Path(shutil.copytree(identity_adapter, tmp_path / "trained"))


@pytest.mark.slow
def test_trained_model_scores_higher_than_untrained(tmp_path, trained):
    # untrained: `tuneforge predict` on the base model
    cfg = write_yaml(tmp_path / "base.yaml", **PREDICT_KEYS, output_dir=str(tmp_path / "base"))
    proc = run_cli("predict", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    base = json.loads((tmp_path / "base" / "predict_results.json").read_text())
    assert set(base) == RESULT_KEYS

    # trained, the way `tuneforge train` calls it after training (do_train + do_predict): output_dir's adapter
    after_keys = {**TINY_SFT, **PREDICT_KEYS, "finetuning_type": "lora", "output_dir": str(trained),
                  "do_predict": True, "predict_with_generate": True}
    predict.maybe_predict(load(base=after_keys)[0])
    tuned = json.loads((trained / "predict_results.json").read_text())
    assert set(tuned) == RESULT_KEYS
    rows = [json.loads(line) for line in (trained / "generated_predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 80 and all(set(r) == {"prompt", "predict", "label"} for r in rows)
    assert rows[0]["prompt"] == "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n"
    assert rows[0]["label"].startswith("I am Forge")
    assert sum("Forge" in r["predict"] for r in rows) >= 60
    print(f"identity predict: untrained {base}, trained {tuned}")
    for name in ("bleu-4", "rouge-1", "rouge-2", "rouge-l"):
        assert tuned[f"predict_{name}"] > base[f"predict_{name}"] + 30, name

    # LLaMA-Factory's predict-through-train: do_train false, the adapter given, output_dir already in use
    out = tmp_path / "lf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    lf_keys = {**PREDICT_KEYS, "do_train": False, "do_predict": True, "predict_with_generate": True,
               "adapter_name_or_path": str(trained), "output_dir": str(out), "max_samples": 8}
    predict.maybe_predict(load(base=lf_keys)[0])
    assert sorted(p.name for p in out.iterdir()) == ["generated_predictions.jsonl", "keep.txt", "predict_results.json"]
    again = [json.loads(line) for line in (out / "generated_predictions.jsonl").read_text().splitlines()]
    assert again == rows[:8]  # greedy decoding of the same adapter: the same answers by either path
