"""What the live view reads from a run's files: progress (with ETA and speed) from the log's progress
bar, the curves from trainer_log.jsonl (loss raw and smoothed)."""

from __future__ import annotations

import json

from tuneforge.train.callbacks import LOG_NAME
from tuneforge.webui import monitor


def test_the_log_name_is_the_one_train_writes():
    assert monitor.LOG_NAME == LOG_NAME


def test_progress_from_the_progress_bar_and_the_tail_collapses_its_redraws(tmp_path):
    log = tmp_path / "webui_train.log"
    log.write_text("step 1/300 | loss 3.1\n  1%|          | 3/300 [00:02<03:40,  1.35it/s]\r"
                   "  2%|▏         | 7/300 [00:05<03:31,  1.38it/s]\r", encoding="utf-8")
    text = monitor.tail(log)
    assert text.splitlines()[-1].strip().startswith("2%")
    bar = monitor.progress(tmp_path, text)
    assert (bar.step, bar.total, bar.elapsed, bar.remaining, bar.speed) == (7, 300, "00:05", "03:31", "1.38it/s")
    assert round(bar.percent, 2) == 2.33


def test_progress_falls_back_to_trainer_log_and_curves_smooth_the_loss(tmp_path):
    rows = [{"current_steps": s, "total_steps": 10, "loss": 3.0 - 0.2 * s, "lr": 1e-4, "grad_norm": 1.5,
             "elapsed_time": "0:0%d" % s, "remaining_time": "0:10"} for s in range(1, 6)]
    rows.append({"current_steps": 5, "total_steps": 10, "eval_loss": 2.5, "elapsed_time": "0:05", "remaining_time": "0:10"})
    (tmp_path / LOG_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"current_st', encoding="utf-8")
    assert len(monitor.records(tmp_path)) == 6  # a half-written line is skipped
    bar = monitor.progress(tmp_path, "no bar yet")
    assert (bar.step, bar.total, bar.remaining, bar.speed) == (5, 10, "0:10", "1.00it/s")  # 5 steps in 5 s
    points = monitor.curve_rows(monitor.records(tmp_path), "loss")
    series = {name for _, _, name in points}
    assert series == {"loss", "loss (smoothed)", "eval_loss"}
    assert [v for _, v, n in points if n == "loss"] == [r["loss"] for r in rows[:5]]
    assert monitor.final_loss(monitor.records(tmp_path)) == rows[4]["loss"]
    assert [p for p in monitor.curve_rows(monitor.records(tmp_path), "lr")] == [(s, 1e-4, "lr") for s in range(1, 6)]


def test_fallback_speed_is_blank_in_the_first_second_and_slow_steps_read_seconds_per_step(tmp_path):
    log = tmp_path / LOG_NAME
    log.write_text(json.dumps({"current_steps": 3, "total_steps": 9, "elapsed_time": "0:00"}) + "\n", encoding="utf-8")
    assert monitor.progress(tmp_path, "").speed == ""
    log.write_text(json.dumps({"current_steps": 2, "total_steps": 9, "elapsed_time": "1:00:05"}) + "\n",
                   encoding="utf-8")
    assert monitor.progress(tmp_path, "").speed == "1802.50s/it"  # 2 steps in an hour and 5 s
