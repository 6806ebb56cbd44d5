"""BLEU-4 and ROUGE-1/2/L of generated answers, computed exactly as LLaMA-Factory computes them, so
its users can compare numbers across the two tools.

Per sample (prediction `pred`, reference `label`):

- Words: `jieba.cut` splits Chinese into words and keeps English words (and each punctuation
  mark) as tokens; whitespace tokens are dropped.
- ROUGE-1/2/L: `rouge_chinese.Rouge().get_scores` on the space-joined words, F-scores.
  ROUGE-N there counts *distinct* n-grams (sets, not multisets); F = 2PR / (P + R + 1e-8).
  An empty (or whitespace-only) prediction or label scores 0 on all three.
- BLEU-4: `nltk.translate.bleu_score.sentence_bleu([list(label)], list(pred),
  smoothing_function=SmoothingFunction().method3)` over *characters* (spaces included):
  uniform weights 1/4 over clipped n-gram precisions n = 1..4, brevity penalty exp(1 - r/c) when
  the prediction is shorter, and NIST smoothing (the k-th precision with no match becomes
  1 / (2^k x its denominator)). No unigram match (e.g. an empty prediction) scores 0.

Each score is multiplied by 100 and rounded to 4 decimals per sample (as LLaMA-Factory does), then
averaged over samples. The libraries come with the `metrics` extra and are imported only when a
score is computed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from tuneforge.config.errors import ConfigError

METRIC_NAMES = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")
INSTALL_HINT = "pip install 'tuneforge[metrics]'"


@lru_cache(maxsize=1)
def load_libraries() -> tuple[Any, Any, Any, Any]:
    """(jieba, Rouge class, sentence_bleu, SmoothingFunction), imported on first use."""
    try:
        import jieba
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
        from rouge_chinese import Rouge
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "a metrics library"
        raise ConfigError(f"BLEU/ROUGE scores need {missing} (jieba, nltk, rouge-chinese): "
                          f"`{INSTALL_HINT}`") from None
    jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict ..." chatter
    return jieba, Rouge, sentence_bleu, SmoothingFunction


def words(text: str) -> list[str]:
    """jieba words of `text` without whitespace tokens: '我喜欢吃苹果' -> ['我', '喜欢', '吃', '苹果'],
    'I am Forge.' -> ['I', 'am', 'Forge', '.']."""
    jieba = load_libraries()[0]
    return [w for w in jieba.cut(text) if w.strip()]


def rouge_scores(pred: str, label: str) -> dict[str, float]:
    """ROUGE-1/2/L F-scores (0-1) of one prediction against its label; 0 when either has no words."""
    jieba, rouge_class = load_libraries()[:2]
    # the space-joined jieba tokens, whitespace tokens included, exactly as LLaMA-Factory passes them
    hyp, ref = " ".join(jieba.cut(pred)), " ".join(jieba.cut(label))
    if not hyp.split() or not ref.split():
        return {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    scores = rouge_class().get_scores(hyp, ref)[0]
    return {name: float(scores[name]["f"]) for name in ("rouge-1", "rouge-2", "rouge-l")}


def bleu4(pred: str, label: str) -> float:
    """Character-level sentence BLEU-4 (0-1) with NIST (method3) smoothing."""
    _, _, sentence_bleu, smoothing = load_libraries()
    return float(sentence_bleu([list(label)], list(pred), smoothing_function=smoothing().method3))


def sample_scores(pred: str, label: str) -> dict[str, float]:
    """{'bleu-4', 'rouge-1', 'rouge-2', 'rouge-l'} of one sample, x100, rounded to 4 decimals."""
    scores = {"bleu-4": bleu4(pred, label), **rouge_scores(pred, label)}
    return {name: round(scores[name] * 100, 4) for name in METRIC_NAMES}


def similarity_scores(preds: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Mean of `sample_scores` over all samples: {'bleu-4', 'rouge-1', 'rouge-2', 'rouge-l'} (0-100)."""
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions but {len(labels)} labels")
    if not preds:
        return {name: 0.0 for name in METRIC_NAMES}
    totals = dict.fromkeys(METRIC_NAMES, 0.0)
    for pred, label in zip(preds, labels):
        for name, value in sample_scores(pred, label).items():
            totals[name] += value
    return {name: totals[name] / len(preds) for name in METRIC_NAMES}
