"""Readers and formats: every file type, folders, LLaMA-Factory's own dataset_info.json unchanged."""

from __future__ import annotations

import json

import pytest

from conftest import LF_DATA, need_shared
from tuneforge.config.errors import DataError
from tuneforge.config.schema import DataConfig
from tuneforge.data.loader import load_examples

ROWS = [{"instruction": "说一句话", "input": "", "output": "你好，世界"},
        {"instruction": "Add", "input": "1 and 2", "output": "3"}]


def write_all_formats(folder):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.json").write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    (folder / "a.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS), encoding="utf-8")
    with (folder / "a.csv").open("w", encoding="utf-8") as f:
        f.write("instruction,input,output\n说一句话,,你好，世界\nAdd,1 and 2,3\n")
    table = pa.Table.from_pylist(ROWS)
    pq.write_table(table, folder / "a.parquet")
    with pa.OSFile(str(folder / "a.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    sub = folder / "shards"
    sub.mkdir()
    (sub / "part1.jsonl").write_text(json.dumps(ROWS[0], ensure_ascii=False), encoding="utf-8")
    (sub / "part2.jsonl").write_text(json.dumps(ROWS[1], ensure_ascii=False), encoding="utf-8")
    info = {f"d_{s}": {"file_name": f"a.{s}"} for s in ("json", "jsonl", "csv", "parquet", "arrow")}
    info["d_folder"] = {"file_name": "shards"}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return list(info)


def test_every_file_type_gives_the_same_examples(tmp_path):
    names = write_all_formats(tmp_path / "data")
    data = DataConfig(dataset_dir=str(tmp_path / "data"))
    for name in names:
        examples, report = load_examples(data, [name], "sft")
        assert [(m.role, m.content) for m in examples[1].messages] == [("user", "Add\n1 and 2"), ("assistant", "3")]
        assert examples[0].messages[1].content == "你好，世界", name


def test_txt_is_pretraining_text(tmp_path):
    (tmp_path / "t.txt").write_text("第一行\n\nsecond line\n", encoding="utf-8")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"t": {"file_name": "t.txt", "columns": {"prompt": "text"}}}))
    examples, _ = load_examples(DataConfig(dataset_dir=str(tmp_path)), ["t"], "pt")
    assert [e.text for e in examples] == ["第一行", "second line"]


def test_identity_placeholders_filled_from_config():
    data = DataConfig(identity_name="小锻", identity_author="Tuneforge Lab")
    examples, report = load_examples(data, ["identity"], "sft")
    assert report.counts == {"identity": 80}
    answers = " ".join(e.messages[-1].content for e in examples)
    assert "{{" not in answers and "小锻" in answers and "Tuneforge Lab" in answers


def test_builtin_demo_datasets_load():
    for name in ("alpaca_demo", "sharegpt_demo"):
        examples, _ = load_examples(DataConfig(), [name], "sft")
        assert examples and all(e.messages[-1].role in ("assistant", "function") for e in examples)
    tools = [e for e in load_examples(DataConfig(), ["sharegpt_demo"], "sft")[0] if e.tools]
    assert tools and any(m.role == "observation" for m in tools[0].messages)


def test_max_samples_and_num_samples(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(ROWS * 5))
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "d": {"file_name": "d.json"}, "up": {"file_name": "d.json", "num_samples": 25}}))
    assert len(load_examples(DataConfig(dataset_dir=str(tmp_path), max_samples=3), ["d"], "sft")[0]) == 3
    assert len(load_examples(DataConfig(dataset_dir=str(tmp_path)), ["up"], "sft")[0]) == 25


def test_sharegpt_system_tag_and_openai_messages(tmp_path):
    rows = [{"messages": [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "hi"},
                          {"role": "assistant", "content": "hello"}]}]
    (tmp_path / "m.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
            "system_tag": "system"}
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "lf": {"file_name": "m.json", "formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": tags},
        "oa": {"file_name": "m.json", "formatting": "openai", "columns": {"messages": "messages"}}}))
    for name in ("lf", "oa"):
        (example,), _ = load_examples(DataConfig(dataset_dir=str(tmp_path)), [name], "sft")
        assert example.system == "你是助手" and [m.role for m in example.messages] == ["user", "assistant"]


def test_hub_dataset_without_network_is_a_clear_error(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"remote": {"hf_hub_url": "someone/some-dataset"}}))
    with pytest.raises(DataError, match="cannot load dataset 'remote' from 'someone/some-dataset'.*file_name"):
        load_examples(DataConfig(dataset_dir=str(tmp_path)), ["remote"], "sft")


LF_SFT = ["identity", "alpaca_en_demo", "alpaca_zh_demo", "glaive_toolcall_en_demo", "glaive_toolcall_zh_demo"]


def test_llamafactory_dataset_info_loads_unchanged(tiny_tokenizer, tmp_path, monkeypatch):
    """LLaMA-Factory's own data/ folder: every local dataset loads and encodes (sft and pt)."""
    need_shared()
    from tuneforge.data.dataset import build_datasets
    from tuneforge.data.templates import get_template

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path))
    template = get_template("qwen", tiny_tokenizer)
    data = DataConfig(dataset=LF_SFT, dataset_dir=str(LF_DATA), cutoff_len=256, identity_name="Forge",
                      identity_author="Lab")
    built = build_datasets(data, template, "sft")
    assert set(built.report.counts) == set(LF_SFT) and len(built.train) == sum(built.report.counts.values())
    pt = build_datasets(data.model_copy(update={"dataset": ["c4_demo", "wiki_demo"]}), template, "pt")
    assert len(pt.train) > 10 and max(len(x) for x in pt.train["input_ids"]) == 256


def test_identity_without_a_name_trains_as_written_with_one_warning():
    """LLaMA-Factory's identity examples train with {{name}} left in: so do we, saying once which key fills it."""
    examples, report = load_examples(DataConfig(), ["identity"], "sft")
    assert "{{name}}" in str(examples[0].to_dict())
    assert len(report.warnings) == 1
    assert report.warnings[0].endswith("identity.json record 0: has the {{name}} and {{author}} placeholder, left "
                                       "as written; set identity_name and identity_author to fill it")
    _, report = load_examples(DataConfig(identity_name="X"), ["identity"], "sft")
    assert len(report.warnings) == 1 and "set identity_author to fill it" in report.warnings[0]
    _, report = load_examples(DataConfig(identity_name="X", identity_author="Y"), ["identity"], "sft")
    assert report.warnings == []
