"""`tuneforge predict CONFIG [key=value ...]`: generate answers for eval_dataset and score BLEU/ROUGE.

Writes output_dir/generated_predictions.jsonl and output_dir/predict_results.json (see
`tuneforge.evaluate.predict`). Nothing trains: do_train is forced off, and do_predict /
predict_with_generate are implied by the command.
"""

from __future__ import annotations

from pathlib import Path


def run_predict(config_path: Path, overrides: list[str]) -> None:
    from tuneforge.cli.config import load_config
    from tuneforge.evaluate.predict import run_prediction

    cfg = load_config(config_path, ["do_train=false", *overrides])
    run_prediction(cfg)
