"""`tokenized_path` (LLaMA-Factory's key): the tokenized datasets kept in a folder the user names.

The first run builds them as usual, then saves them there (`DatasetDict.save_to_disk`: a `train`
split and, when there is one, a `validation` split, LLaMA-Factory's layout) and trains; a run that
finds the folder loads it memory-mapped and reads no dataset file, template or tokenizer rule
again, so later runs and every rank of a multi-process run skip preprocessing. LLaMA-Factory stops
after saving; tuneforge goes on to train. A folder LLaMA-Factory saved loads too (its extra
columns, such as attention_mask, are dropped).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from tuneforge.config.errors import DataError
from tuneforge.config.schema import DataConfig
from tuneforge.config.stages import facts
from tuneforge.data.encoded import COLUMNS, EncodedData, progress_bars
from tuneforge.data.fingerprint import process_tag
from tuneforge.data.loader import LoadReport
from tuneforge.log import note

META = "tuneforge.json"
EVAL_SPLITS = ("validation", "eval", "test")


def _columns(dataset: Any, stage: str, path: Path) -> Any:
    """The saved split with exactly the columns `stage` reads; a split saved for another stage is refused."""
    wanted = COLUMNS[facts(stage).data]
    missing = [c for c in wanted if c != "full_len" and c not in dataset.column_names]
    if missing:
        raise DataError(f"tokenized_path holds the columns {', '.join(dataset.column_names)}, not the "
                        f"{', '.join(missing)} that stage {stage} needs (was it saved for another stage?); point "
                        "tokenized_path at a new folder to build it for this one", source=str(path))
    extra = [c for c in dataset.column_names if c not in wanted]
    return dataset.remove_columns(extra) if extra else dataset


def load_tokenized(data: DataConfig, stage: str) -> EncodedData | None:
    """The datasets saved in tokenized_path, or None when the folder does not exist yet."""
    from datasets import Dataset, load_from_disk

    path = Path(data.tokenized_path or "").expanduser()
    if not path.exists():
        return None
    if not path.is_dir():
        raise DataError("tokenized_path is a file; it names a folder (created on the first run)", source=str(path))
    try:
        saved = load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(f"tokenized_path is not a folder of tokenized datasets ({first}); point it at a new folder "
                        "to build one there", source=str(path)) from None
    if isinstance(saved, Dataset):
        train, evals = saved, None
    else:
        if "train" not in saved:
            raise DataError(f"tokenized_path has no train split (it has {', '.join(saved) or 'none'})",
                            source=str(path))
        train = saved["train"]
        evals = next((saved[name] for name in EVAL_SPLITS if name in saved), None)
    meta = json.loads((path / META).read_text(encoding="utf-8")) if (path / META).is_file() else {}
    if meta.get("stage_data", facts(stage).data) != facts(stage).data:
        raise DataError(f"tokenized_path was saved for stage {meta.get('stage')}, whose samples stage {stage} cannot "
                        "train on; point tokenized_path at a new folder to build it for this one", source=str(path))
    train = _columns(train, stage, path)
    evals = _columns(evals, stage, path) if evals is not None else None
    note(f"tokenized_path: loaded {len(train):,} training samples"
         + (f" and {len(evals):,} eval" if evals is not None else "") + f" from {path}; the datasets, template "
         "and cutoff_len are not read again (delete the folder to rebuild it)")
    report = LoadReport(dict(meta.get("counts", {})), list(meta.get("skipped", [])))
    return EncodedData(train=train, eval=evals, report=report, dropped=int(meta.get("dropped", 0)), from_cache=True)


def save_tokenized(result: EncodedData, data: DataConfig, stage: str) -> None:
    """Save `result` into tokenized_path (written beside it, then renamed: never a half-written folder)."""
    from datasets import DatasetDict

    path = Path(data.tokenized_path or "").expanduser()
    if path.exists():
        return
    splits = {"train": result.train, **({"validation": result.eval} if result.eval is not None else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{process_tag()}")
    try:
        with progress_bars(len(result.train) >= 10_000):
            DatasetDict(splits).save_to_disk(str(tmp))
        meta = {"stage": stage, "stage_data": facts(stage).data, "counts": result.report.counts,
                "skipped": result.report.skipped, "dropped": result.dropped, "cutoff_len": data.cutoff_len,
                "datasets": data.dataset}
        (tmp / META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        try:
            os.replace(tmp, path)
        except OSError:
            if not path.is_dir():  # not another process that saved it first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    note(f"tokenized_path: saved the tokenized data to {path}; runs with this tokenized_path load it from there")
