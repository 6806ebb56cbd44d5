"""Training through the CLI path: padding-free and packed runs are the padded run, only faster."""

from __future__ import annotations

import pytest
from e2e.helpers import log_lines, train

from tuneforge.model.tiny_archs import ARCHS, ensure_arch

pytestmark = pytest.mark.slow

STEPS = {"max_steps": 4, "logging_steps": 1, "gradient_accumulation_steps": 2, "learning_rate": 5e-3,
         "finetuning_type": "lora"}


def _trace(out):
    rows = [r for r in log_lines(out) if "loss" in r]
    return [r["loss"] for r in rows], [r["grad_norm"] for r in rows]


@pytest.mark.parametrize("arch", ["tiny", *ARCHS])
def test_padding_free_training_follows_the_padded_run_step_by_step(tmp_path, arch):
    model = {} if arch == "tiny" else {"model_name_or_path": str(ensure_arch(arch))}
    padded = _trace(train(tmp_path / "padded", padding_free=False, fused_loss=False, **model, **STEPS))
    fast = _trace(train(tmp_path / "fast", **model, **STEPS))  # the defaults: padding-free rows + chunked loss
    assert fast[0] == pytest.approx(padded[0], abs=1e-5)  # losses, normalised over the accumulated tokens
    assert fast[1] == pytest.approx(padded[1], rel=1e-5)  # gradient norms


def test_tokens_seen_counts_every_real_token_exactly(tmp_path):
    from tuneforge.config.load import load
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.templates import get_template
    from tuneforge.model.load import load_tokenizer

    out = train(tmp_path / "run", num_train_epochs=2, logging_steps=5)
    cfg, _ = load(out / "training_args.yaml")
    template = get_template(cfg.data.template, load_tokenizer(cfg.model))
    data = build_datasets(cfg.data, template, "sft")
    expected = 2 * sum(len(ids) for ids in data.train["input_ids"])
    assert log_lines(out)[-1]["num_input_tokens_seen"] == expected


def test_packed_run_trains_and_logs_the_data_wait(tmp_path):
    out = train(tmp_path / "packed", packing=True, num_train_epochs=8, learning_rate=5e-3, logging_steps=5)
    rows = [r for r in log_lines(out) if "loss" in r]
    assert rows[-1]["loss"] < rows[0]["loss"] / 2
    assert all(r["data_wait_s"] >= 0 for r in rows) and rows[-1]["data_wait_s"] > 0
