"""Datasets larger than memory: files read a piece at a time, records written to Arrow as they come,
encoding as Arrow batch maps (workers included), the cache keyed without reading the records,
tokenized_path, streaming, weighted interleaving."""

from __future__ import annotations

import json

import pytest

from tuneforge.config.errors import DataError
from tuneforge.data import readers
from tuneforge.textfile import TextProblem, parse_json

DOCS = [
    '[{"a": "说 1"}, {"a": 2.5e3, "b": [1, {"c": null}]}, {"a": "x\\u00e9\\"y"}]',
    '  \n[\n  {"a": 1},\n  {"a": 123456789012345678901234567890}\n]\n  ',
    '[]',
    '{"only": "one record"}',
    '[{"a": 1}, 7, "text"]',
]
BAD = [
    '[{"a": 1}, {"a": 2,}]',
    '[{"a": 1}\n {"a": 2}]',
    '[{"a": 1},\n\n  {"a": "unterminated\n"}]',
    '[{"a": 1}] trailing',
    '[{"a": 1}, {"a": tru}]',
    '[{"a": 1},',
    '"just a string"',
]


def read_json(path):
    return [row for _, row in readers.read_file(path)]


@pytest.mark.parametrize("chunk", [3, 7, 1 << 20])
def test_json_arrays_read_item_by_item_equal_a_whole_parse(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(readers, "CHUNK", chunk)  # records straddle every chunk boundary
    for index, doc in enumerate(DOCS):
        path = tmp_path / f"d{index}.json"
        path.write_text(doc, encoding="utf-8")
        whole = parse_json(doc)
        assert read_json(path) == (whole if isinstance(whole, list) else [whole]), doc
    for index, doc in enumerate(BAD):
        path = tmp_path / f"b{index}.json"
        path.write_text(doc, encoding="utf-8")
        try:
            expected = parse_json(doc)
        except TextProblem as exc:
            expected = str(exc)
        else:
            expected = "expected a list of records"
        with pytest.raises(DataError) as caught:
            read_json(path)
        assert str(caught.value) == f"{path}: {expected}", doc


def test_a_json_file_is_never_read_whole(tmp_path, monkeypatch):
    """A 20,000-record array: the first record comes out after one chunk has been read, not the file."""
    monkeypatch.setattr(readers, "CHUNK", 4096)
    path = tmp_path / "big.json"
    path.write_text(json.dumps([{"instruction": f"问题 {i}", "output": "答" * 50} for i in range(20000)],
                               ensure_ascii=False), encoding="utf-8")
    reads = []
    real_open = readers.open_text

    def counting_open(*args, **kwargs):
        handle_cm = real_open(*args, **kwargs)

        class Counting:
            def __enter__(self):
                handle = handle_cm.__enter__()
                real_read = handle.read

                def read(n=-1):
                    reads.append(n)
                    return real_read(n)

                handle.read = read
                return handle

            def __exit__(self, *exc):
                return handle_cm.__exit__(*exc)

        return Counting()

    monkeypatch.setattr(readers, "open_text", counting_open)
    rows = readers.read_file(path)
    assert next(rows)[1]["instruction"] == "问题 0"
    assert reads and all(0 < n <= 8192 for n in reads) and len(reads) <= 2
    assert sum(1 for _ in rows) == 19999


def test_arrow_file_and_stream_formats_and_parquet_batches(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": f"第{i}题", "output": str(i)} for i in range(2500)]
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=1000)
    with pa.OSFile(str(tmp_path / "file.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=700)
    with pa.OSFile(str(tmp_path / "stream.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=700)
    for name in ("a.parquet", "file.arrow", "stream.arrow"):
        got = list(readers.read_file(tmp_path / name))
        assert [row for _, row in got] == rows, name
        assert got[-1][0] == "record 2499"
    (tmp_path / "broken.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(DataError, match="cannot read arrow file"):
        list(readers.read_file(tmp_path / "broken.arrow"))


# ------------------------------------------------------------------ batched encoding, cache, workers

@pytest.fixture()
def chatml(tiny_tokenizer):
    from tuneforge.data.templates import get_template

    return get_template("qwen3_nothink", tiny_tokenizer)


def write_alpaca(folder, count: int, name: str = "big", **entry):
    """`count` alpaca records (Chinese and English, some with input) in `folder`/<name>.jsonl, registered."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(count):
            record = {"instruction": f"问题 {i}: 说说 {i % 7} 的事" if i % 3 else f"Question {i} about {i % 11}",
                      "input": "" if i % 2 else f"上下文 {i}", "output": ("回答 " if i % 3 else "Answer ") + "x" * (i % 40)}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    info_file = folder / "dataset_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    info[name] = {"file_name": f"{name}.jsonl", **entry}
    info_file.write_text(json.dumps(info))


def _other_tokenizer(kind: str):
    """A fast tokenizer of another family, trained here: WordPiece behind a normalizer that lowercases and
    strips accents (characters vanish, so offsets skip them), or a Unigram with a Metaspace pre-tokenizer
    (the SentencePiece style: a space becomes part of the next token)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["Hello world, how are you?", "说话 很好 。 éclair café", "the quick brown fox 12 34", "aa bb ab ba"] * 20
    specials = ["<|im_start|>", "<|im_end|>", "<think>"]
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]", *specials])
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=["<unk>", *specials], unk_token="<unk>")
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=specials)


@pytest.mark.parametrize("kind", ["tiny", "wordpiece", "metaspace"])
def test_batched_tokenization_gives_exactly_the_per_conversation_ids(tiny_tokenizer, kind):
    """The batch path calls the Rust tokenizer directly and splits each conversation at its pieces' first
    characters; it must give exactly the ids (and the split) of tokenizing each conversation on its own."""
    import random

    from tuneforge.data.encode.tokenize import tokenize_turns, tokenize_turns_batch
    from tuneforge.data.templates.base import Turn

    tokenizer = tiny_tokenizer if kind == "tiny" else _other_tokenizer(kind)
    rng = random.Random(0)
    # special tokens, multi-byte characters split across byte-level tokens, empty pieces, whitespace runs,
    # accents a normalizer strips
    alphabet = ["a", "b", " ", "\n", "说", "😀", "<|im_end|>", "<|im_start|>", "é", "  ", "<think>", "12", "É"]
    conversations = [[Turn(*("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(3)))
                      for _ in range(rng.randint(1, 3))] for _ in range(2000)]
    assert tokenize_turns_batch(tokenizer, conversations) == [tokenize_turns(tokenizer, t) for t in conversations]


def test_records_are_written_to_arrow_in_batches_not_held(tmp_path):
    """20,000 records become an Arrow file while Python's own allocations stay within a few MB, less than a
    quarter of what the same records take as a list of Examples (which grows with the dataset)."""
    import tracemalloc

    from tuneforge.config.schema import DataConfig
    from tuneforge.data.loader import load_examples, load_rows

    import pyarrow  # noqa: F401  # imported before measuring: an import allocates more than this does
    from datasets import Dataset

    write_alpaca(tmp_path / "data", 20_000)
    data = DataConfig(dataset_dir=str(tmp_path / "data"))
    peaks = []
    for load in (lambda: load_rows(data, ["big"], "sft", tmp_path / "rows"), lambda: load_examples(data, ["big"], "sft")):
        tracemalloc.start()
        try:
            loaded, report = load()
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert len(loaded) == report.counts["big"] == 20_000
    assert peaks[0] < 4 * 2**20 and peaks[1] > 4 * peaks[0], peaks  # measured: 1.3 MB vs 15.6 MB as a list
    rows = Dataset.from_file(str(tmp_path / "rows" / "0.arrow"))
    listed, _ = load_examples(DataConfig(dataset_dir=str(tmp_path / "data"), max_samples=50), ["big"], "sft")
    assert [row["messages"] for row in rows.select(range(50))] == [
        [{"role": m.role, "content": m.content} for m in e.messages] for e in listed]


def test_cached_start_reads_no_record_and_workers_encode_the_same(tmp_path, chatml, monkeypatch):
    from tuneforge.config.schema import DataConfig
    from tuneforge.data import dataset, loader

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    write_alpaca(tmp_path / "data", 1500)
    data = DataConfig(dataset=["big"], dataset_dir=str(tmp_path / "data"), cutoff_len=64, bad_records="skip")
    one = dataset.build_datasets(data.model_copy(update={"preprocessing_num_workers": 1}), chatml, "sft")
    two = dataset.build_datasets(data.model_copy(update={"preprocessing_num_workers": 2, "overwrite_cache": True}),
                                 chatml, "sft")
    assert not one.from_cache and not two.from_cache
    assert one.train.to_dict() == two.train.to_dict() and len(one.train) == 1500
    assert len(two.train.cache_files) == 2  # one Arrow file per worker, memory-mapped

    def no_reading(*args, **kwargs):
        raise AssertionError("a cached start read the dataset")

    monkeypatch.setattr(loader, "read_rows", no_reading)
    cached = dataset.build_datasets(data, chatml, "sft")
    assert cached.from_cache and cached.report.counts == {"big": 1500}
    assert cached.train.to_dict() == one.train.to_dict()
    assert cached.train.features["input_ids"].feature.dtype == "int32"


def test_sample_lengths_and_packing_read_arrow_and_cache_the_rows(tmp_path, chatml, monkeypatch):
    from tuneforge.config.schema import DataConfig
    from tuneforge.data import dataset, packing

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    write_alpaca(tmp_path / "data", 300)
    data = DataConfig(dataset=["big"], dataset_dir=str(tmp_path / "data"), cutoff_len=64, val_size=0.2)
    train = dataset.build_datasets(data, chatml, "sft").train  # a split: an indices mapping over the cache file
    assert packing.sample_lengths(train).tolist() == [len(ids) for ids in train["input_ids"]]
    packed = packing.pack_dataset(train, 64)
    in_memory = packing.pack_dataset(train.flatten_indices(keep_in_memory=True), 64)
    assert packed.to_dict() == in_memory.to_dict()
    assert sum(map(len, packed["input_ids"])) == sum(map(len, train["input_ids"]))
    monkeypatch.setattr(packing, "pack_lengths", lambda *a: pytest.fail("packed again"))
    assert packing.pack_dataset(train, 64).to_dict() == packed.to_dict()


def test_tokenized_path_saves_then_loads_without_reading(tmp_path, chatml, monkeypatch, caplog):
    from tuneforge.config.schema import DataConfig
    from tuneforge.data import dataset, loader

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    write_alpaca(tmp_path / "data", 200)
    saved_to = tmp_path / "分词后"  # a Chinese path
    data = DataConfig(dataset=["big"], dataset_dir=str(tmp_path / "data"), cutoff_len=64, val_size=10,
                      tokenized_path=str(saved_to))
    first = dataset.build_datasets(data, chatml, "sft")
    assert (saved_to / "dataset_dict.json").is_file() and "saved the tokenized data" in caplog.text
    monkeypatch.setattr(loader, "read_rows", lambda *a, **k: pytest.fail("read the dataset"))
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "empty-cache"))  # not the cache: the folder
    second = dataset.build_datasets(data.model_copy(update={"cutoff_len": 8}), chatml, "sft")
    assert second.from_cache and second.train.to_dict() == first.train.to_dict()
    assert second.eval.to_dict() == first.eval.to_dict() and len(second.eval) == 10
    assert "loaded 190 training samples and 10 eval" in caplog.text
    with pytest.raises(DataError, match="tokenized_path was saved for stage sft, whose samples stage dpo cannot"):
        dataset.build_datasets(data, chatml, "dpo")


def test_tokenized_path_from_llamafactory_drops_its_extra_columns(tmp_path, chatml):
    from datasets import Dataset, DatasetDict

    from tuneforge.config.schema import DataConfig
    from tuneforge.data import dataset

    rows = {"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 1]], "labels": [[-100, 2, 3]]}
    DatasetDict({"train": Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "lf"))
    built = dataset.build_datasets(DataConfig(tokenized_path=str(tmp_path / "lf")), chatml, "sft")
    assert built.train.column_names == ["input_ids", "labels"] and built.train[0]["labels"] == [-100, 2, 3]


# ------------------------------------------------------------------ streaming and weighted interleaving

def test_a_stream_encodes_what_the_cached_dataset_holds(tmp_path, chatml, monkeypatch):
    from tuneforge.config.schema import DataConfig
    from tuneforge.data import dataset

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    write_alpaca(tmp_path / "data", 600)
    data = DataConfig(dataset=["big"], dataset_dir=str(tmp_path / "data"), cutoff_len=64)
    cached = dataset.build_datasets(data, chatml, "sft").train
    stream = dataset.build_datasets(data.model_copy(update={"streaming": True, "buffer_size": 1, "val_size": 5}),
                                    chatml, "sft")
    assert not hasattr(stream.train, "__len__") and stream.train.column_names == ["input_ids", "labels", "full_len"]
    assert list(stream.eval) == [cached[i] for i in range(5)]
    got = list(stream.train)
    assert got == [cached[i] for i in range(5, 600)]
    shuffled = dataset.build_datasets(data.model_copy(update={"streaming": True, "buffer_size": 64}), chatml, "sft")
    order = list(shuffled.train)
    assert order != [cached[i] for i in range(600)] and sorted(map(str, order)) == sorted(map(str, cached))


def test_a_bad_record_in_a_stream_is_one_line_before_training(tmp_path, chatml, monkeypatch):
    from tuneforge.config.schema import DataConfig
    from tuneforge.data import dataset

    folder = tmp_path / "data"
    write_alpaca(folder, 3)
    with (folder / "big.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"instruction": "no output"}\n')
    data = DataConfig(dataset=["big"], dataset_dir=str(folder), cutoff_len=64, streaming=True, buffer_size=10)
    with pytest.raises(DataError, match=r"big.jsonl line 4: 'output' is missing"):
        dataset.build_datasets(data, chatml, "sft")


def test_interleave_probs_draw_in_proportion(tmp_path):
    from tuneforge.config.schema import DataConfig
    from tuneforge.data.loader import load_examples

    write_alpaca(tmp_path, 400, name="a")
    write_alpaca(tmp_path, 400, name="b")
    data = DataConfig(dataset_dir=str(tmp_path), mix_strategy="interleave_under", interleave_probs=[0.8, 0.2])
    examples, _ = load_examples(data, ["a", "b"], "sft")
    from_a = sum("a.jsonl" in e.source for e in examples)
    assert from_a == 400 and 0.7 < from_a / len(examples) < 0.9  # stops when the likelier one runs out
    over = load_examples(data.model_copy(update={"mix_strategy": "interleave_over"}), ["a", "b"], "sft")[0]
    assert {e.source for e in over} == {e.source for e in examples} | {e.source for e in over}
    assert sum("b.jsonl" in e.source for e in over) >= 400  # until every dataset has run out
