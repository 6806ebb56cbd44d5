"""Files from every editor: UTF-8 with a BOM (Windows Notepad, Excel's "CSV UTF-8") reads as UTF-8
everywhere a file is read, CRLF as LF; other encodings are named with the command that converts them,
or read when the dataset's entry sets "encoding"; Chinese names and brackets survive in every message."""

from __future__ import annotations

import codecs
import json
import logging
import sys
from pathlib import Path

import pytest

from conftest import assert_one_error_line, write_yaml
from tuneforge.config.errors import ConfigError, DataError
from tuneforge.config.load import load, read_yaml
from tuneforge.config.schema import DataConfig
from tuneforge.data.loader import load_examples
from tuneforge.evaluate import bench

ROWS = [{"instruction": "说一句话", "input": "", "output": "你好，世界"},
        {"instruction": "Add", "input": "1 and 2", "output": "3"}]
CONVO = [{"conversations": [{"from": "human", "value": "你是谁？"}, {"from": "gpt", "value": "我是 Forge。"}]}]
EXPECTED = [[("user", "说一句话"), ("assistant", "你好，世界")], [("user", "Add\n1 and 2"), ("assistant", "3")]]


def texts(kind: str) -> str:
    """ROWS as the text of a .json / .jsonl / .csv file, or pre-training lines for .txt."""
    if kind == "json":
        return json.dumps(ROWS, ensure_ascii=False, indent=1)
    if kind == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS)
    if kind == "csv":
        return "instruction,input,output\n说一句话,,你好，世界\nAdd,1 and 2,3\n"
    return "第一行\n\nsecond line\n"


def dataset(folder: Path, kind: str, raw: bytes, **entry) -> DataConfig:
    folder.mkdir(parents=True, exist_ok=True)
    name = f"数据.{kind}"
    (folder / name).write_bytes(raw)
    (folder / "dataset_info.json").write_text(json.dumps({"d": {"file_name": name, **entry}}, ensure_ascii=False),
                                              encoding="utf-8")
    return DataConfig(dataset_dir=str(folder))


def conversations(folder: Path, kind: str, raw: bytes, **entry) -> list:
    stage = "pt" if kind == "txt" else "sft"
    examples, _ = load_examples(dataset(folder, kind, raw, **entry), ["d"], stage)
    if kind == "txt":
        return [e.text for e in examples]
    return [[(m.role, m.content) for m in e.messages] for e in examples]


@pytest.mark.parametrize("kind", ["json", "jsonl", "csv", "txt"])
@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_bom_and_crlf_read_as_plain_utf8(tmp_path, kind, ending):
    text = texts(kind).replace("\n", ending)
    plain = conversations(tmp_path / "plain", kind, text.encode("utf-8"))
    assert plain == (["第一行", "second line"] if kind == "txt" else EXPECTED)
    assert conversations(tmp_path / "bom", kind, codecs.BOM_UTF8 + text.encode("utf-8")) == plain


def test_bom_in_a_folder_of_jsonl_shards_and_in_dataset_info(tmp_path):
    shards = tmp_path / "分片"
    shards.mkdir()
    for i, row in enumerate(ROWS):
        (shards / f"part{i}.jsonl").write_bytes(codecs.BOM_UTF8 + json.dumps(row, ensure_ascii=False).encode())
    info = {"d": {"file_name": "分片"}, "c": {"file_name": "c.json", "formatting": "sharegpt"}}
    (tmp_path / "c.json").write_bytes(codecs.BOM_UTF8 + json.dumps(CONVO, ensure_ascii=False).encode())
    (tmp_path / "dataset_info.json").write_bytes(codecs.BOM_UTF8 + json.dumps(info, ensure_ascii=False).encode())
    examples, report = load_examples(DataConfig(dataset_dir=str(tmp_path)), ["d", "c"], "sft")
    assert report.counts == {"d": 2, "c": 1}
    assert [(m.role, m.content) for m in examples[2].messages] == [("user", "你是谁？"), ("assistant", "我是 Forge。")]


def test_bom_in_yaml_config(tmp_path):
    path = tmp_path / "训练 [v2].yaml"
    path.write_bytes(codecs.BOM_UTF8 + "model_name_or_path: tuneforge/tiny\r\ndataset: identity\r\n"
                     "output_dir: 输出\r\n".encode())
    cfg, _ = load(path)
    assert (cfg.model.model_name_or_path, cfg.data.dataset, cfg.train.output_dir) == ("tuneforge/tiny", ["identity"],
                                                                                      "输出")


def test_bom_in_eval_task_files(tmp_path):
    folder = tmp_path / "任务"
    (folder / "test").mkdir(parents=True)
    mapping = {"law": {"name": "法律", "category": "Humanities"}}
    (folder / "mapping.json").write_bytes(codecs.BOM_UTF8 + json.dumps(mapping, ensure_ascii=False).encode())
    (folder / "test" / "law.csv").write_bytes(codecs.BOM_UTF8 + "id,question,A,B,C,D,answer\r\n"
                                              "1,哪一个？,甲,乙,丙,丁,B\r\n".encode())
    task = bench.load_task("任务_test", tmp_path, n_shot=0)
    (question,) = task.subjects[0].test
    assert (task.subjects[0].name, question.question, question.choices, question.answer) == (
        "法律", "哪一个？", ("甲", "乙", "丙", "丁"), "B")
    # MMLU's header-less CSV, saved by Excel with a BOM
    (folder / "test" / "law.csv").write_bytes(codecs.BOM_UTF8 + "哪一个？,甲,乙,丙,丁,C\r\n".encode())
    assert bench.load_task("任务_test", tmp_path, n_shot=0).subjects[0].test[0].answer == "C"


# -- other encodings: named, with the command that converts them --------------------------------
@pytest.mark.parametrize("kind", ["json", "jsonl", "csv", "txt"])
def test_gbk_file_named_with_line_and_iconv_command(tmp_path, kind):
    text = "\n" + texts(kind)  # a blank first line: the first Chinese text is further down
    line = {"json": 4, "jsonl": 2, "csv": 3, "txt": 2}[kind]
    folder = tmp_path / "数据 [v2]"
    with pytest.raises(DataError) as err:
        conversations(folder, kind, text.encode("gbk"))
    path = folder / f"数据.{kind}"
    assert str(err.value) == (
        f"{path}: GB18030 text, not UTF-8 (first at line {line}); convert it: iconv -f GB18030 -t UTF-8 '{path}' > "
        f"'{folder / f'数据.utf8.{kind}'}' (or set \"encoding\": \"gb18030\" in the 'd' entry of "
        f"{folder / 'dataset_info.json'})")


@pytest.mark.parametrize("codec, named", [("big5", "Big5"), ("shift_jis", "Shift_JIS"), ("cp1252", "Windows-1252"),
                                          ("utf-16-le", "UTF-16LE")])
def test_other_encodings_named(tmp_path, codec, named):
    text = {"big5": "[{\"instruction\": \"說一句話\", \"output\": \"你好，這個世界。\"}]",
            "shift_jis": "[{\"instruction\": \"こんにちは\", \"output\": \"今日はいい天気ですね。\"}]",
            "cp1252": "[{\"instruction\": \"Café crème\", \"output\": \"Très bien, merci à vous.\"}]",
            "utf-16-le": json.dumps(ROWS, ensure_ascii=False)}[codec]
    with pytest.raises(DataError, match=f"{named} text, not UTF-8 .*iconv -f {named} -t UTF-8"):
        conversations(tmp_path, "json", text.encode(codec))


@pytest.mark.parametrize("bom, named", [(codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
                                        (codecs.BOM_UTF32_LE, "UTF-32")])
def test_utf16_and_utf32_byte_order_marks_named(tmp_path, bom, named):
    codec = {codecs.BOM_UTF16_LE: "utf-16-le", codecs.BOM_UTF16_BE: "utf-16-be", codecs.BOM_UTF32_LE: "utf-32-le"}[bom]
    raw = bom + texts("jsonl").encode(codec)
    with pytest.raises(DataError, match=f"{named} text \\(it starts with a {named} byte-order mark\\), not UTF-8; "
                                        f"convert it: iconv -f {named} -t UTF-8"):
        conversations(tmp_path, "jsonl", raw)


def test_a_utf8_file_cut_short_or_damaged_says_so(tmp_path):
    raw = texts("jsonl").encode("utf-8")
    cut = raw + '{"instruction": "好'.encode()[:-2]  # the copy stopped inside 好's three bytes
    with pytest.raises(DataError, match="数据.jsonl: line 3: the file ends in the middle of a UTF-8 character "
                                        r"\(0xE5\); it may have been cut short"):
        conversations(tmp_path / "cut", "jsonl", cut)
    damaged = raw.replace("你好".encode(), b"\xff\xfe")
    with pytest.raises(DataError, match=r"line 1 is not valid UTF-8 \(0xFF\) although the rest of the file is"):
        conversations(tmp_path / "damaged", "jsonl", damaged + "世界\n".encode() * 3)


@pytest.mark.parametrize("codec", ["gb18030", "gbk", "big5", "utf-16", "UTF-16LE", "utf-8", "utf-8-sig"])
@pytest.mark.parametrize("kind", ["json", "jsonl", "csv"])
def test_encoding_set_in_the_entry_is_used(tmp_path, codec, kind):
    text = texts(kind).replace("说一句话", "說一句話") if codec == "big5" else texts(kind)
    got = conversations(tmp_path, kind, text.encode(codec), encoding=codec)
    assert got[1] == EXPECTED[1] and got[0][1] == EXPECTED[0][1]


def test_wrong_encoding_in_the_entry_names_the_line(tmp_path):
    raw = ("[\n" + json.dumps(ROWS[1]) + ",\n" + json.dumps(ROWS[0], ensure_ascii=False) + "\n]").encode()
    with pytest.raises(DataError, match=r"数据.json: line 3 is not valid big5 text \(.*\), although \"encoding\" says "
                                        "big5; check the encoding, or convert the file to UTF-8"):
        conversations(tmp_path, "json", raw, encoding="big5")


@pytest.mark.parametrize("value, message", [("utf-9", "unknown encoding 'utf-9'"),
                                            ("base64", "unknown encoding 'base64'"),
                                            (936, "'encoding' must be a codec name")])
def test_unknown_encoding_in_the_entry_is_one_line(tmp_path, value, message):
    with pytest.raises(DataError) as err:
        conversations(tmp_path, "json", texts("json").encode(), encoding=value)
    assert str(err.value).startswith(f"{tmp_path / 'dataset_info.json'} dataset 'd': ")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_gbk_dataset_info_and_yaml_config_are_named_without_an_encoding_setting(tmp_path):
    info = tmp_path / "dataset_info.json"
    info.write_bytes(json.dumps({"数据": {"file_name": "数据.json"}}, ensure_ascii=False).encode("gbk"))
    with pytest.raises(DataError) as err:
        load_examples(DataConfig(dataset_dir=str(tmp_path)), ["数据"], "sft")
    assert str(err.value) == (f"{info}: GB18030 text, not UTF-8 (first at line 1); convert it: iconv -f GB18030 -t "
                              f"UTF-8 {info} > {tmp_path / 'dataset_info.utf8.json'}")
    config = tmp_path / "配置.yaml"
    config.write_bytes("model_name_or_path: tuneforge/tiny\ndataset: 数据\n".encode("gbk"))
    with pytest.raises(ConfigError, match=r"配置.yaml: GB18030 text, not UTF-8 \(first at line 2\); convert it: "
                                          r"iconv -f GB18030 -t UTF-8 .*配置.yaml' > .*配置.utf8.yaml'$"):
        read_yaml(config)


# -- through the CLI: one line, brackets and Chinese names intact ----------------------------------
def run_cli_in_process(args: list[str], cwd: Path, monkeypatch, capsys) -> tuple[int, str]:
    from tuneforge.cli.main import run

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["tuneforge", *args])
    with pytest.raises(SystemExit) as exit_:
        run()
    return exit_.value.code, capsys.readouterr().err


def test_cli_error_line_keeps_brackets_and_chinese_path(tiny_path, tmp_path, monkeypatch, capsys):
    import subprocess

    folder = tmp_path / "data" / "[v2]" / "中文 [bold]"
    dataset(folder, "json", json.dumps(ROWS, ensure_ascii=False).encode("gb18030"))
    cfg = write_yaml(tmp_path / "[v2].yaml", model_name_or_path="tuneforge/tiny", template="qwen3_nothink", do_train=True,
                     dataset="d", dataset_dir=str(folder), output_dir=str(tmp_path / "out"), max_steps=1)
    code, err = run_cli_in_process(["train", str(cfg)], tmp_path, monkeypatch, capsys)
    line = assert_one_error_line(subprocess.CompletedProcess([], code, "", err),
                                 f"{folder / '数据.json'}: GB18030 text", "data/[v2]/中文 [bold]/数据.utf8.json",
                                 "\"encoding\": \"gb18030\"", alone=False)
    assert line.startswith("error: ")


def test_note_prints_brackets_as_they_are(capsys):
    from tuneforge.log import LOGGER, note, to_stderr

    to_stderr()
    try:
        note("read data/[v2]/x.json ([bold]not markup[/bold])")
    finally:
        logging.getLogger(LOGGER).handlers.clear()
    assert capsys.readouterr().err == "tuneforge: read data/[v2]/x.json ([bold]not markup[/bold])\n"
