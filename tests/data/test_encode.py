"""Encoding: what trains, truncation, pre-training blocks, and the on-disk cache."""

from __future__ import annotations

import pytest

from tuneforge.config.schema import DataConfig
from tuneforge.data.encode.pretrain import encode_pretrain
from tuneforge.data.encode.supervised import encode_supervised
from tuneforge.data.labels import IGNORE_INDEX as IGNORE
from tuneforge.data.encode.tokenize import tokenize_turns
from tuneforge.data.example import Example, Message
from tuneforge.data.templates import get_template


@pytest.fixture()
def chatml(tiny_tokenizer):
    return get_template("qwen3_nothink", tiny_tokenizer)


def convo(*texts: str, system: str | None = None) -> Example:
    roles = ["user", "assistant"] * len(texts)
    return Example(messages=[Message(r, t) for r, t in zip(roles, texts)], system=system)


def encode(template, example, cutoff=1024, **kw):
    turns = tokenize_turns(template.tokenizer, template.render(example))
    return encode_supervised(turns, cutoff, **kw)


def trained_text(tok, ids, labels):
    return tok.decode([i for i, lab in zip(ids, labels) if lab != IGNORE])


def test_prompt_masked_answer_trained_and_ends_with_stop(chatml, tiny_tokenizer):
    ids, labels = encode(chatml, convo("你是谁", "我是 Forge。", system="Be brief."))
    assert ids == tiny_tokenizer(chatml.render_text(convo("你是谁", "我是 Forge。", system="Be brief.")),
                                 add_special_tokens=False)["input_ids"]
    assert trained_text(tiny_tokenizer, ids, labels) == "我是 Forge。<|im_end|>"
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    last_trained = max(i for i, lab in enumerate(labels) if lab != IGNORE)
    assert ids[last_trained] == im_end and labels[last_trained] == im_end
    assert labels[-1] == IGNORE  # chatml's newline after <|im_end|> is formatting, not trained


def test_multi_turn_trains_every_answer_unless_mask_history(chatml, tiny_tokenizer):
    example = convo("hi", "Hello!", "Who are you?", "I am Forge.")
    ids, labels = encode(chatml, example)
    assert trained_text(tiny_tokenizer, ids, labels) == "Hello!<|im_end|>I am Forge.<|im_end|>"
    ids, labels = encode(chatml, example, mask_history=True)
    assert trained_text(tiny_tokenizer, ids, labels) == "I am Forge.<|im_end|>"


def test_train_on_prompt(chatml, tiny_tokenizer):
    ids, labels = encode(chatml, convo("hi", "Hello!"), train_on_prompt=True)
    assert labels[:-1] == ids[:-1]


def test_truncation_keeps_both_sides_of_a_turn(chatml, tiny_tokenizer):
    long_q, long_a = "question " * 200, "answer " * 200
    ids, labels = encode(chatml, convo(long_q, long_a), cutoff=64)
    assert len(ids) <= 64
    n_trained = sum(lab != IGNORE for lab in labels)
    assert 16 <= n_trained <= 48  # both sides keep a share
    prompt_text = tiny_tokenizer.decode([i for i, lab in zip(ids, labels) if lab == IGNORE])
    assert prompt_text.startswith("<|im_start|>user") and prompt_text.endswith("<|im_start|>assistant\n")


def test_truncation_drops_later_turns_and_mask_history_keeps_the_last(chatml, tiny_tokenizer):
    example = convo("one " * 30, "first answer", "two", "second answer")
    ids, labels = encode(chatml, example, cutoff=40)
    assert "first" in trained_text(tiny_tokenizer, ids, labels)
    assert "second" not in trained_text(tiny_tokenizer, ids, labels)
    ids, labels = encode(chatml, example, cutoff=40, mask_history=True)
    assert trained_text(tiny_tokenizer, ids, labels) == "second answer<|im_end|>"


def test_nothing_trainable_within_cutoff_returns_none(chatml):
    assert encode(chatml, convo("hi", "Hello!"), cutoff=1) is None


def test_pretraining_blocks(tiny_tokenizer):
    blocks = encode_pretrain(tiny_tokenizer, ["first document " * 20, "第二篇文档"], cutoff_len=16)
    flat = [t for b in blocks for t in b]
    assert all(len(b) == 16 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 16
    assert flat.count(tiny_tokenizer.eos_token_id) == 2  # each document ends with eos
    assert tiny_tokenizer.decode(flat).endswith("第二篇文档<|im_end|>")


def test_dataset_cache_by_fingerprint(tmp_path, chatml, monkeypatch):
    import json

    from tuneforge.data.dataset import build_datasets

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    data_file = tmp_path / "d.json"
    data_file.write_text(json.dumps([{"instruction": "hi", "output": "hello"}] * 4))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.json"}}))
    data = DataConfig(dataset=["d"], dataset_dir=str(tmp_path), cutoff_len=64)
    assert not build_datasets(data, chatml, "sft").from_cache
    assert build_datasets(data, chatml, "sft").from_cache
    data_file.write_text(json.dumps([{"instruction": "hi", "output": "changed"}] * 4))
    assert not build_datasets(data, chatml, "sft").from_cache  # edited data is never served stale
    assert not build_datasets(data.model_copy(update={"cutoff_len": 32}), chatml, "sft").from_cache
    assert not build_datasets(data.model_copy(update={"overwrite_cache": True}), chatml, "sft").from_cache


def test_val_size_splits(tmp_path, chatml, monkeypatch):
    from tuneforge.data.dataset import build_datasets

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    data = DataConfig(dataset=["identity"], cutoff_len=128, val_size=0.25, identity_name="X", identity_author="Y")
    built = build_datasets(data, chatml, "sft")
    assert (len(built.train), len(built.eval)) == (60, 20)


def test_eval_dataset_is_encoded_separately(tmp_path, chatml, monkeypatch):
    from tuneforge.data.dataset import build_datasets

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    data = DataConfig(dataset=["identity"], eval_dataset=["alpaca_demo"], cutoff_len=128, identity_name="X",
                      identity_author="Y")
    built = build_datasets(data, chatml, "sft", need_eval=True)
    assert (len(built.train), len(built.eval)) == (80, 40)
    assert built.report.counts == {"identity": 80, "alpaca_demo (eval)": 40}
