"""The output folder as LLaMA-Factory users know it: a default saves/<model>/<method>/train_<time>, re-running
into a folder with checkpoints continues from the newest whole one, overwrite_output_dir starts over."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from conftest import write_yaml
from e2e.helpers import TINY_SFT, log_lines
from tuneforge.config.errors import ConfigError

RUN = {**TINY_SFT, "overwrite_output_dir": False, "cutoff_len": 64, "max_samples": 16, "logging_steps": 1,
       "save_strategy": "steps", "save_steps": 2, "max_steps": 4, "plot_loss": False}


def steps(out: Path) -> list[int]:
    return [r["current_steps"] for r in log_lines(out) if "loss" in r]


def test_default_output_dir_then_rerun_resumes_and_overwrite_starts_over(tmp_path, monkeypatch, caplog):
    from tuneforge.cli.train import run_train

    monkeypatch.chdir(tmp_path)
    config = write_yaml(tmp_path / "train.yaml", **RUN)
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        run_train(config, [])
    made = list((tmp_path / "saves" / "tiny" / "lora").glob("train_*"))
    assert len(made) == 1 and f"output_dir is not set: writing to {Path('saves', 'tiny', 'lora', made[0].name)}" \
        in caplog.text
    out = made[0]
    assert steps(out) == [1, 2, 3, 4] and (out / "checkpoint-4").is_dir()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        run_train(config, [f"output_dir={out}", "max_steps=6"])
    assert "holds checkpoints of an earlier run: continuing it" in caplog.text
    assert "resuming from" in caplog.text and "checkpoint-4 (step 4)" in caplog.text
    assert steps(out) == [1, 2, 3, 4, 5, 6]
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        run_train(config, [f"output_dir={out}", "max_steps=2", "overwrite_output_dir=true"])
    assert "resuming" not in caplog.text
    assert steps(out) == [1, 2] and not (out / "checkpoint-6").exists()


def test_a_folder_with_other_files_or_only_incomplete_checkpoints_is_refused(tmp_path):
    from tuneforge.cli.config import load_config
    from tuneforge.train.outputs import WEBUI_FILES, check_output_dir

    out = tmp_path / "out"
    cfg = load_config(None, base={**RUN, "output_dir": str(out)})
    out.mkdir()
    for name in WEBUI_FILES:  # what the web UI writes before it starts the run there
        (out / name).write_text("")
    assert check_output_dir(cfg) is None
    (out / "checkpoint-3").mkdir()
    (out / "checkpoint-3" / "optimizer.pt").write_bytes(b"torn")
    with pytest.raises(ConfigError, match=r"is not empty \(its checkpoints are incomplete: checkpoint-3\); set "
                                          "overwrite_output_dir: true"):
        check_output_dir(cfg)
    assert check_output_dir(cfg.model_copy(update={"train": cfg.train.model_copy(
        update={"overwrite_output_dir": True})})) is None


def test_the_default_folder_is_named_after_the_model_and_method():
    import re

    from tuneforge.train.outputs import default_output_dir

    made = default_output_dir("/data/模型/通义千问-7B/", "full")
    assert re.fullmatch(r"saves/通义千问-7B/full/train_\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d", made), made
    assert default_output_dir("Qwen/Qwen2.5-7B-Instruct", "lora").startswith("saves/Qwen2.5-7B-Instruct/lora/train_")
