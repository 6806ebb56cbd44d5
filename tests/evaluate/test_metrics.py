"""BLEU-4 / ROUGE against numbers worked out by hand from the definitions (see evaluate/metrics.py):

ROUGE-N (rouge_chinese) counts *distinct* n-grams of the jieba words: P = overlap / |pred n-grams|,
R = overlap / |label n-grams|, F = 2PR / (P + R) (plus 1e-8 in the denominator, invisible after
rounding to 4 decimals). ROUGE-L uses the longest common subsequence of the word lists.
BLEU-4 is over characters: the geometric mean of the clipped 1..4-gram precisions p1..p4, times the
brevity penalty exp(1 - r/c) when the prediction (c chars) is shorter than the label (r chars);
a precision with no match becomes 1 / (2^k x denominator) for the k-th such precision (method3).
Every score is x100.
"""

from __future__ import annotations

import math
import sys

import pytest

from tuneforge.config.errors import ConfigError
from tuneforge.evaluate import metrics

# (prediction, label, expected {bleu-4, rouge-1, rouge-2, rouge-l})
CASES = {
    # English, prediction is a prefix of the label.
    # words: pred [the, cat] (2), label [the, cat, sat] (3)
    # ROUGE-1: overlap {the, cat} = 2 -> P 2/2, R 2/3 -> F = 2*(2/3)/(5/3) = 0.8
    # ROUGE-2: pred {the cat}, label {the cat, cat sat}: overlap 1 -> P 1, R 1/2 -> F = 1/1.5 = 2/3
    # ROUGE-L: LCS "the cat" = 2 -> P 1, R 2/3 -> F 0.8
    # BLEU: chars "the cat" (c = 7) all occur in "the cat sat" (r = 11) as a prefix, so
    #   p1 = 7/7, p2 = 6/6, p3 = 5/5, p4 = 4/4; BP = exp(1 - 11/7) = exp(-4/7) = 0.5647181220
    "english": ("the cat", "the cat sat", dict(bleu=56.4718, r1=80.0, r2=66.6667, rl=80.0)),
    # Chinese: jieba gives [我, 喜欢, 吃, 香蕉] and [我, 喜欢, 吃, 苹果].
    # ROUGE-1: 3 of 4 words shared both ways -> 0.75
    # ROUGE-2: {我喜欢, 喜欢吃, 吃香蕉} vs {我喜欢, 喜欢吃, 吃苹果}: 2 of 3 -> 2/3
    # ROUGE-L: LCS [我, 喜欢, 吃] = 3 of 4 -> 0.75
    # BLEU over 6 chars each (BP = 1): p1 = 4/6 (我喜欢吃), p2 = 3/5 (我喜 喜欢 欢吃), p3 = 2/4 (我喜欢 喜欢吃),
    #   p4 = 1/3 (我喜欢吃) -> (4/6 * 3/5 * 2/4 * 1/3)^(1/4) = (1/15)^(1/4) = 0.5081327482
    "chinese": ("我喜欢吃香蕉", "我喜欢吃苹果", dict(bleu=50.8133, r1=75.0, r2=66.6667, rl=75.0)),
    # An anagram: no shared word (all ROUGE 0); smoothing decides BLEU.
    # chars c,a,t vs a,c,t: p1 = 3/3; bigrams {ca, at} vs {ac, ct}: 0/2 -> 1/(2^1 * 2) = 1/4;
    # trigram cat vs act: 0/1 -> 1/(2^2 * 1) = 1/4; no 4-gram: 0/1 -> 1/(2^3 * 1) = 1/8; BP = 1 (3 = 3)
    # -> (1 * 1/4 * 1/4 * 1/8)^(1/4) = 2^(-7/4) = 0.2973017788
    "smoothed": ("cat", "act", dict(bleu=29.7302, r1=0.0, r2=0.0, rl=0.0)),
    # Exact match: every precision 1, BP 1, every F 1.
    "exact": ("I am Forge.", "I am Forge.", dict(bleu=100.0, r1=100.0, r2=100.0, rl=100.0)),
    # Empty prediction: no unigram match -> BLEU 0; no words -> ROUGE 0.
    "empty": ("", "hello", dict(bleu=0.0, r1=0.0, r2=0.0, rl=0.0)),
}


def _expected(case: dict) -> dict[str, float]:
    return {"bleu-4": case["bleu"], "rouge-1": case["r1"], "rouge-2": case["r2"], "rouge-l": case["rl"]}


def test_hand_arithmetic_of_the_references():
    """The constants above are the formulas' values (guards typos in the table)."""
    assert round(100 * math.exp(-4 / 7), 4) == CASES["english"][2]["bleu"]
    assert round(100 * (4 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, 4) == CASES["chinese"][2]["bleu"]
    assert round(100 * (1 * 1 / 4 * 1 / 4 * 1 / 8) ** 0.25, 4) == CASES["smoothed"][2]["bleu"]


def test_jieba_words():
    assert metrics.words("我喜欢吃香蕉") == ["我", "喜欢", "吃", "香蕉"]
    assert metrics.words("the cat sat") == ["the", "cat", "sat"]
    assert metrics.words("I am Forge.") == ["I", "am", "Forge", "."]
    assert metrics.words("我是Forge，一个AI助手") == ["我", "是", "Forge", "，", "一个", "AI", "助手"]


@pytest.mark.parametrize("name", list(CASES))
def test_sample_scores(name):
    pred, label, expected = CASES[name]
    got = metrics.sample_scores(pred, label)
    assert got == pytest.approx(_expected(expected), abs=1e-4)


def test_average_over_the_set():
    preds, labels = zip(*[(p, label) for p, label, _ in CASES.values()])
    # bleu: (56.4718 + 50.8133 + 29.7302 + 100 + 0) / 5 = 47.40306
    # rouge-1: (80 + 75 + 0 + 100 + 0) / 5 = 51; rouge-2: (66.6667 + 66.6667 + 0 + 100 + 0) / 5 = 46.66668
    # rouge-l: (80 + 75 + 0 + 100 + 0) / 5 = 51
    got = metrics.similarity_scores(list(preds), list(labels))
    assert got == pytest.approx({"bleu-4": 47.40306, "rouge-1": 51.0, "rouge-2": 46.66668, "rouge-l": 51.0},
                                abs=1e-4)


def test_rouge_counts_distinct_ngrams():
    # pred [the cat is on the mat], label [the cat sat on the mat]: "the" repeats.
    # ROUGE-1 sets: {the, cat, is, on, mat} vs {the, cat, sat, on, mat}: 4 of 5 -> 0.8
    # ROUGE-2 sets: {the cat, cat is, is on, on the, the mat} vs {the cat, cat sat, sat on, on the, the mat}:
    #   3 of 5 -> 0.6;  ROUGE-L: LCS [the cat on the mat] = 5 of 6 words each -> 5/6
    got = metrics.rouge_scores("the cat is on the mat", "the cat sat on the mat")
    assert got == pytest.approx({"rouge-1": 0.8, "rouge-2": 0.6, "rouge-l": 5 / 6}, abs=1e-6)


def test_one_word_exact_match_has_no_bigram():
    # "delta" has no word bigram, so ROUGE-2 has P = R = 0 (rouge_chinese's convention, kept by
    # LLaMA-Factory); the other scores are perfect (BLEU: 5 chars, p1..p4 = 5/5, 4/4, 3/3, 2/2).
    assert metrics.sample_scores("delta", "delta") == pytest.approx(
        {"bleu-4": 100.0, "rouge-1": 100.0, "rouge-2": 0.0, "rouge-l": 100.0}, abs=1e-4)


def test_whitespace_only_and_empty_label_score_zero():
    assert metrics.sample_scores("   ", "hello") == {"bleu-4": 0.0, "rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    assert metrics.sample_scores("hello", "") == {"bleu-4": 0.0, "rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    assert metrics.similarity_scores([], []) == {"bleu-4": 0.0, "rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    with pytest.raises(ValueError):
        metrics.similarity_scores(["a"], [])


def test_missing_library_names_the_extra(monkeypatch):
    metrics.load_libraries.cache_clear()
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba -> ImportError
    try:
        with pytest.raises(ConfigError, match=r"pip install 'tuneforge\[metrics\]'"):
            metrics.bleu4("a", "a")
    finally:
        metrics.load_libraries.cache_clear()
