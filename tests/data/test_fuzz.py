"""Readers under fuzz: random records (alpaca, ShareGPT, OpenAI messages, preference, KTO, plain
text), written as JSON / JSONL / CSV / TXT in random encodings, with or without a BOM, with LF, CRLF
or CR line endings, sometimes cut short or with a damaged byte, at sizes up to a few hundred KB,
go through the whole data layer: dataset_info.json -> readers -> formats -> Example -> template ->
token ids on the tiny tokenizer (the stage's real encoder, via `encode_examples`). dataset_info.json
entries, YAML configs and eval task files are fuzzed the same way.

Every case must load, or raise DataError / ConfigError naming the file -- never another exception,
never a hang. Hypothesis runs derandomized (the same cases every run, no example database) with
a per-case deadline and a bounded number of cases, so the file stays well under a minute.

`python tests/data/test_fuzz.py` runs the same cases but counts outcomes (loaded / our error /
any other exception by type) instead of stopping at the first failure.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import os
import re
import sys
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneforge.config.errors import ConfigError, DataError
from tuneforge.config.load import read_yaml
from tuneforge.config.schema import DataConfig
from tuneforge.data.dataset import encode_examples
from tuneforge.data.loader import load_examples, load_rows
from tuneforge.data.templates import get_template
from tuneforge.evaluate.bench import read_questions

CASES = int(os.environ.get("FUZZ_CASES", 100))  # per property
FUZZ = settings(derandomize=True, database=None, max_examples=CASES, deadline=timedelta(seconds=20),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture, HealthCheck.large_base_example])
TALLY: Counter | None = None  # set when run as a script: count outcomes instead of failing
EXAMPLES: dict[str, str] = {}  # tally mode: one message per exception type

# -- values ------------------------------------------------------------------------------------
CHARS = st.sampled_from(list("ab yz09_.-") + list("你好世界说一句话，。：“”") +
                        ["\n", "\r", "\t", "\x00", "\x1f", "\x7f", '"', "'", ",", ";", "\\", "{", "}", "[", "]",
                         ":", "#", "|", "\ufeff", "\u2028", "\u0085", "é", "😀", "\U0010ffff"])
GOOD_WORDS = ["", " ", "你好", "{{name}}", "data/[v2]/x.json", "<|im_end|>", "<think>", "NaN", "true", "null", "[]",
              "{}", "\\ud800", "human", "gpt"]
# "\udfff": a lone surrogate, which JSON escapes and UTF-8 cannot hold
WORDS = st.sampled_from(GOOD_WORDS + ["HUGE_INT", "DEEP_LIST", "\udfff"])
TEXT = st.one_of(st.text(CHARS, max_size=12), WORDS)
GOOD_TEXT = st.one_of(st.text(CHARS, max_size=12), st.sampled_from(GOOD_WORDS))
GOOD = st.text(CHARS, min_size=1, max_size=12).filter(lambda s: s.strip())
LONG = "长文本 long text " * 10_000  # past csv's 128 KiB field limit
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
# JSON that json.dumps cannot write: written as these strings, swapped for the raw text after dumping
RAW_JSON = {'"HUGE_INT"': "9" * 5000, '"DEEP_LIST"': "[" * 50_000 + "]" * 50_000}
VALUE = st.recursive(SCALAR, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3),
                     max_leaves=5)
FIELD = st.one_of(GOOD, GOOD, VALUE, st.sampled_from(["ok"] * 9 + [LONG]))
TOOLS = st.one_of(st.just(json.dumps([{"name": "f", "parameters": {"type": "object"}}])), VALUE.map(json.dumps), VALUE)

GOOD_ALPACA = st.fixed_dictionaries({"instruction": GOOD, "output": GOOD}, optional={
    "input": GOOD_TEXT, "system": GOOD, "history": st.lists(st.lists(GOOD, min_size=2, max_size=2), max_size=2),
    "chosen": GOOD, "rejected": GOOD, "kto_tag": st.booleans()})
ALPACA = st.fixed_dictionaries(
    {"instruction": FIELD, "output": FIELD},
    optional={"input": FIELD, "system": FIELD, "history": st.lists(st.lists(FIELD, max_size=3), max_size=2) | VALUE,
              "tools": TOOLS, "chosen": FIELD, "rejected": FIELD, "kto_tag": st.booleans() | VALUE, "text": FIELD})
ROLES = st.sampled_from(["human", "gpt", "system", "observation", "function_call"]) | VALUE
TURN = st.fixed_dictionaries({"from": ROLES, "value": FIELD}) | VALUE
PAIRS = st.lists(st.tuples(GOOD, GOOD), min_size=1, max_size=3).map(
    lambda pairs: [{"from": r, "value": v} for q, a in pairs for r, v in (("human", q), ("gpt", a))])
GOOD_SHAREGPT = st.fixed_dictionaries({"conversations": PAIRS}, optional={"system": GOOD, "chosen": GOOD,
                                                                          "rejected": GOOD})
SHAREGPT = st.fixed_dictionaries(
    {"conversations": st.one_of(PAIRS, PAIRS, st.lists(TURN, max_size=4), VALUE)},
    optional={"system": FIELD, "tools": TOOLS, "chosen": TURN | FIELD, "rejected": TURN | FIELD})
# (formatting, stage, records): any record, or only well-formed ones
KINDS = st.one_of(
    st.tuples(st.just("alpaca"), st.sampled_from(["sft", "pt", "rm", "kto"]),
              st.lists(st.one_of(GOOD_ALPACA, ALPACA, ALPACA, VALUE), min_size=1, max_size=5)),
    st.tuples(st.just("sharegpt"), st.sampled_from(["sft", "pt", "rm"]),
              st.lists(st.one_of(GOOD_SHAREGPT, SHAREGPT, SHAREGPT, VALUE), min_size=1, max_size=5)),
    st.tuples(st.just("openai"), st.just("sft"), st.lists(GOOD_SHAREGPT | SHAREGPT, min_size=1, max_size=5)),
)
GOOD_KINDS = st.one_of(
    st.tuples(st.just("alpaca"), st.sampled_from(["sft", "pt", "rm", "kto"]), st.lists(GOOD_ALPACA, min_size=1,
                                                                                         max_size=4)),
    st.tuples(st.just("sharegpt"), st.just("sft"), st.lists(GOOD_SHAREGPT, min_size=1, max_size=4)),
)
STAGE_KEYS = {"rm": {"ranking": True}, "kto": {"columns": {"kto_tag": "kto_tag"}}}
ALPACA_EXTRA = {"columns": {"system": "system", "history": "history", "tools": "tools"}}


def openai_style(record: Any) -> Any:
    """A ShareGPT record spelt with OpenAI's role/content keys."""
    names = {"from": "role", "value": "content", "human": "user", "gpt": "assistant", "conversations": "messages"}
    if isinstance(record, dict):
        return {names.get(k, k): openai_style(v) for k, v in record.items()}
    if isinstance(record, list):
        return [openai_style(v) for v in record]
    return names.get(record, record) if isinstance(record, str) else record


# -- files -------------------------------------------------------------------------------------
def cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def raw_json(text: str) -> str:
    for marker, raw in RAW_JSON.items():
        text = text.replace(marker, raw)
    return text


def serialise(kind: str, records: list[Any], ensure_ascii: bool) -> str:
    if kind == "json":
        return raw_json(json.dumps(records, ensure_ascii=ensure_ascii, indent=1 if ensure_ascii else None))
    if kind == "jsonl":
        return "\n".join(raw_json(json.dumps(r, ensure_ascii=ensure_ascii)) for r in records) + "\n"
    if kind == "txt":
        return "\n".join(cell(r) for r in records)
    rows = [r if isinstance(r, dict) else {"instruction": cell(r)} for r in records]
    header = list(dict.fromkeys(k for r in rows for k in r)) or ["instruction", "output"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([cell(r.get(k, "")) for k in header] for r in rows)
    return out.getvalue()


ENCODINGS = ["utf-8"] * 4 + ["utf-8-sig"] * 2 + ["gb18030", "big5", "utf-16", "cp1252"]


@st.composite
def file_bytes(draw: Callable, text: str) -> tuple[bytes, str]:
    """(the file's bytes, the codec they are in): line endings, encoding, size and damage drawn."""
    ending = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    text = text.replace("\n", ending)
    codec = draw(st.sampled_from(ENCODINGS))
    data = text.encode(codec, errors="surrogatepass" if codec.startswith("utf") else "replace")
    times = draw(st.sampled_from([1, 1, 1, 2, 300]))  # a concatenated file; large ones cross the 64 KiB reads
    data *= times if len(data) * times < 1_000_000 else 1
    damage = draw(st.sampled_from(["none"] * 5 + ["cut", "byte", "insert"]))
    if data and damage != "none":
        at = draw(st.integers(0, len(data) - 1))
        junk = draw(st.binary(min_size=1, max_size=3))
        data = {"cut": data[:at], "byte": data[:at] + junk[:1] + data[at + 1:],
                "insert": data[:at] + junk + data[at:]}[damage]
    return data, codec


def check(run: Callable[[], Any], *names: str) -> str:
    """Run one case: fine, or our error naming one of `names` (the files involved). In tally mode every
    other exception is counted by type instead of failing the test."""
    try:
        run()
    except (DataError, ConfigError) as exc:
        message = str(exc)
        named = "\n" not in message.strip() and any(name in message for name in names)
        if TALLY is None:
            assert named, f"not one line naming {names}: {message}"
        outcome = "our error" if named else f"our error, file not named: {message[:90]!r}"
    except Exception as exc:
        if TALLY is None:
            raise
        outcome = type(exc).__name__
        EXAMPLES.setdefault(outcome, f"{str(exc)[:100]!r}")
    else:
        outcome = "loaded"
    if TALLY is not None:
        TALLY[outcome] += 1
    return outcome


def load_and_encode(folder: Path, stage: str, tokenizer: Any, skip: bool) -> None:
    data = DataConfig(dataset_dir=str(folder), cutoff_len=48, bad_records="skip" if skip else "error")
    examples, _ = load_examples(data, ["fz"], stage)
    template = get_template("qwen3_nothink", tokenizer)
    with tempfile.TemporaryDirectory() as tmp:  # the Arrow path training takes: the same records
        rows, _ = load_rows(data, ["fz"], stage, Path(tmp))
        assert len(rows) == len(examples)
        encode_examples(rows.select(range(min(20, len(rows)))), template, stage, data)
    encode_examples(examples[:20], template, stage, data)


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer):
    return tiny_tokenizer


def entry_for(formatting: str, stage: str, file_name: str, extra: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"file_name": file_name, "formatting": formatting, **STAGE_KEYS.get(stage, {})}
    if formatting == "openai":
        entry["columns"] = {"messages": "messages"}
    if extra and formatting == "alpaca" and stage in ("sft", "rm"):
        entry.update(ALPACA_EXTRA)
    return entry


def feed(folder: Path, entry: dict[str, Any], raw: bytes, stage: str, tokenizer: Any, skip: bool) -> str:
    folder.mkdir(parents=True)
    (folder / entry["file_name"]).write_bytes(raw)
    (folder / "dataset_info.json").write_text(json.dumps({"fz": entry}, ensure_ascii=False), encoding="utf-8")
    return check(lambda: load_and_encode(folder, stage, tokenizer, skip), entry["file_name"], "dataset_info.json")


@FUZZ
@given(kind=KINDS, file_kind=st.sampled_from(["json", "jsonl", "jsonl", "csv"]), ensure_ascii=st.booleans(),
       extra=st.booleans(), skip=st.sampled_from([False, True, True]))
def test_records_load_or_name_the_record(tokenizer, kind, file_kind, ensure_ascii, extra, skip):
    """Any record, in a clean UTF-8 file: converted and encoded, or our error naming the file (and record)."""
    formatting, stage, records = kind
    if formatting == "openai":
        records = [openai_style(r) for r in records]
    raw = serialise(file_kind, records, ensure_ascii).encode("utf-8", errors="surrogatepass")
    entry = entry_for(formatting, stage, f"records.{file_kind}", extra)
    with tempfile.TemporaryDirectory() as tmp:
        feed(Path(tmp) / "data", entry, raw, stage, tokenizer, skip)


@FUZZ
@given(kind=GOOD_KINDS, file_kind=st.sampled_from(["json", "jsonl", "csv", "txt"]), ensure_ascii=st.booleans(),
       declared=st.sampled_from([None, None, None, "same", "same", "gb18030", "utf-9"]),
       folder_name=st.sampled_from(["data", "数据 [v2]"]), data=st.data())
def test_files_load_or_name_the_file(tokenizer, kind, file_kind, ensure_ascii, declared, folder_name, data):
    """Good records in any encoding, with or without a BOM, any line ending, any size, cut short or damaged."""
    formatting, stage, records = kind
    if file_kind == "txt":
        stage = "pt"
    raw, codec = data.draw(file_bytes(serialise(file_kind, records, ensure_ascii)))
    entry = entry_for(formatting, stage, f"训练 {file_kind}.{file_kind}", False)
    if declared:
        entry["encoding"] = codec if declared == "same" else declared
    with tempfile.TemporaryDirectory() as tmp:
        feed(Path(tmp) / folder_name, entry, raw, stage, tokenizer, False)


CODECS = ["utf-8-sig", "utf-16", "utf-16-le", "gb18030", "big5", "cp1252", "shift_jis"]


def loaded(folder: Path, entry: dict[str, Any], raw: bytes, stage: str) -> Any:
    """The examples (without their source) a dataset file gives, or the error message without the folder."""
    folder.mkdir(parents=True)
    (folder / entry["file_name"]).write_bytes(raw)
    (folder / "dataset_info.json").write_text(json.dumps({"fz": entry}, ensure_ascii=False), encoding="utf-8")
    try:
        examples, _ = load_examples(DataConfig(dataset_dir=str(folder)), ["fz"], stage)
    except (DataError, ConfigError) as exc:
        return str(exc).replace(str(folder), "")
    return [{**e.to_dict(), "source": None} for e in examples]


@FUZZ
@given(kind=GOOD_KINDS, file_kind=st.sampled_from(["json", "jsonl", "csv", "txt"]), ensure_ascii=st.booleans(),
       ending=st.sampled_from(["\n", "\r\n", "\r"]), data=st.data())
def test_good_files_read_the_same_in_every_encoding(kind, file_kind, ensure_ascii, ending, data):
    """The same text saved with a BOM, or in another encoding that its entry names, gives exactly what the
    UTF-8 file gives (records, or the same error)."""
    formatting, stage, records = kind
    stage = "pt" if file_kind == "txt" else stage
    text = serialise(file_kind, records, ensure_ascii).lstrip("\ufeff").replace("\n", ending)
    codecs = [c for c in CODECS if text == text.encode(c, errors="replace").decode(c)]
    codec = data.draw(st.sampled_from(codecs))
    entry = entry_for(formatting, stage, f"文件.{file_kind}", False)
    with tempfile.TemporaryDirectory() as tmp:
        expected = loaded(Path(tmp) / "utf8", entry, text.encode("utf-8"), stage)
        if codec != "utf-8-sig":
            entry["encoding"] = codec
        got = loaded(Path(tmp) / codec, entry, text.encode(codec), stage)
    if TALLY is not None:
        TALLY["same" if got == expected else f"differs: {str(got)[:80]}"] += 1
        return
    assert got == expected


def mostly(good: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(good, good, good, VALUE)


ENTRY = st.fixed_dictionaries({  # file names from a list (a random one could be "..": a walk through /tmp)
    "file_name": st.one_of(st.sampled_from(["d.json", "sub", "", "missing.json", "sub/a.jsonl", "d.JSON",
                                            "名字 [v2].json"]), VALUE.filter(lambda v: not isinstance(v, str)))},
    optional={
    "formatting": mostly(st.sampled_from(["alpaca", "sharegpt", "openai"])), "ranking": mostly(st.booleans()),
    "columns": mostly(st.dictionaries(st.sampled_from(["prompt", "query", "response", "messages", "system"]) | TEXT,
                                      mostly(st.sampled_from(["instruction", "output", "conversations"])))),
    "tags": mostly(st.dictionaries(st.sampled_from(["role_tag", "content_tag", "user_tag"]) | TEXT,
                                   mostly(st.sampled_from(["from", "value", "human"])))),
    "num_samples": mostly(st.integers(1, 5)), "encoding": mostly(st.sampled_from(["gb18030", "utf-8", "base64", "x"])),
    "split": VALUE, "subset": VALUE, "hf_hub_url": st.just("") | VALUE})
GOOD_ROWS = [{"instruction": "说一句话", "output": "你好"}, {"conversations": [
    {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}]


@FUZZ
@given(entry=st.one_of(ENTRY, ENTRY, ENTRY, VALUE), data=st.data())
def test_dataset_info_loads_or_names_itself(tokenizer, entry, data):
    raw, _ = data.draw(file_bytes(json.dumps({"fz": entry}, ensure_ascii=False)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "d.json").write_text(json.dumps(GOOD_ROWS, ensure_ascii=False), encoding="utf-8")
        (folder / "sub").mkdir()
        (folder / "sub" / "a.jsonl").write_text(json.dumps(GOOD_ROWS[0], ensure_ascii=False), encoding="utf-8")
        (folder / "dataset_info.json").write_bytes(raw)
        check(lambda: load_and_encode(folder, "sft", tokenizer, False), "dataset_info.json", "d.json", "sub",
              "'fz'")


YAML_LINES = st.sampled_from(["1: 2\n", "null: x\n", "? [a, b]\n: c\n", "yes: no\n", "- a\n", "a: &x [*x]\n",
                             "b: !!python/object:os.system {}\n", "{\n", "c:\td\n", "lr: 1e-4\n", "'': e\n",
                             "f: " + "[" * 5000 + "\n", "g: 你好 [v2]\n", "h: *nope\n", "%YAML 9.9\n---\ni: 1\n"])
CONFIG_KEYS = st.dictionaries(st.sampled_from(["model_name_or_path", "dataset", "template", "learning_rate",
                                               "lora_target", "output_dir"]) | TEXT, VALUE, max_size=5)


@FUZZ
@given(keys=CONFIG_KEYS, data=st.data())
def test_yaml_configs_read_or_name_the_file(keys, data):
    text = yaml.safe_dump(keys, allow_unicode=data.draw(st.booleans()))
    text += "".join(data.draw(st.lists(YAML_LINES, max_size=2)))
    raw, _ = data.draw(file_bytes(text))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "配置 [v2].yaml"
        path.write_bytes(raw)

        def run() -> None:
            flat = read_yaml(path)
            assert all(isinstance(k, str) for k in flat), flat  # what route() needs

        check(run, str(path))


QUESTION = st.fixed_dictionaries({"question": FIELD, "A": FIELD, "B": FIELD, "C": FIELD, "D": FIELD,
                                  "answer": st.sampled_from(["A", "B", "C", "D"]) | FIELD})


@FUZZ
@given(rows=st.lists(QUESTION | VALUE, max_size=4), file_kind=st.sampled_from(["json", "jsonl", "csv"]),
       header=st.booleans(), data=st.data())
def test_eval_task_files_read_or_name_the_file(rows, file_kind, header, data):
    text = serialise(file_kind, rows, data.draw(st.booleans()))
    if file_kind == "csv" and not header:
        text = text.partition("\n")[2]  # MMLU's own files have no header row
    raw, _ = data.draw(file_bytes(text))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"高中 [v2]_test.{file_kind}"
        path.write_bytes(raw)
        check(lambda: read_questions(path), path.name)


# -- what the fuzzing found, each kept as a named example -----------------------------------------
GOOD_JSON = '{"instruction": "说一句话", "output": "你好"}'
LONG_CELL = "长" * 200_000
FOUND = {  # name -> (file name, its bytes, dataset_info entry keys, what the error says; None: it loads)
    "json_nested_50000_deep": ("d.json", ('[{"instruction": "a", "output": "b", "input": ' + "[" * 50_000 + "]" * 50_000
                                          + "}]").encode(), {}, "JSON nested too deeply to read"),
    "json_integer_of_5000_digits": ("d.json", ('[{"instruction": ' + "9" * 5000 + "}]").encode(), {},
                                    "d.json: a number in the JSON is too long to read"),
    "jsonl_lone_surrogate_escape": ("d.jsonl", (GOOD_JSON + '\n{"instruction": "a\\udfff", "output": "b"}\n').encode(),
                                    {}, "d.jsonl line 2: has the escape \\udfff, half of a UTF-16 surrogate pair"),
    "csv_cell_over_128_KiB": ("d.csv", f"instruction,output\n{LONG_CELL},b\n".encode(), {}, None),
    "csv_more_cells_than_header": ("d.csv", "instruction,output\na,b\nc,d,e\n".encode(), {},
                                   "d.csv line 3: has 3 fields but the header has 2"),
    "tools_a_number": ("d.jsonl", '{"instruction": "a", "output": "b", "tools": "5"}'.encode(),
                       {"columns": {"tools": "tools"}}, "line 1: 'tools' must be a list of tool descriptions"),
    "dataset_info_not_utf8": ("dataset_info.json", json.dumps({"fz": {"file_name": "数据.json"}}, ensure_ascii=False)
                              .encode("gbk"), {}, "dataset_info.json: GB18030 text, not UTF-8"),
    "dataset_info_file_name_a_number": ("dataset_info.json", b'{"fz": {"file_name": 7}}', {},
                                        "dataset 'fz': 'file_name' must be a string, got 7"),
    "dataset_info_tags_a_list": ("dataset_info.json", b'{"fz": {"file_name": "d.json", "tags": [1]}}', {},
                                 "dataset 'fz': 'tags' must be an object, got list"),
    "dataset_info_column_a_list": ("dataset_info.json", b'{"fz": {"file_name": "d.json", "columns": {"prompt": []}}}',
                                   {}, "dataset 'fz': 'columns' maps 'prompt' to []; it must be a name"),
}


@pytest.mark.parametrize("name", FOUND)
def test_found_by_fuzzing(tmp_path, name):
    file_name, raw, keys, error = FOUND[name]
    folder = tmp_path / "data"
    entry = {"file_name": "d.json", **keys} if file_name == "dataset_info.json" else {"file_name": file_name, **keys}
    got = loaded(folder, entry, b"[" + GOOD_JSON.encode() + b"]" if file_name == "dataset_info.json" else raw, "sft")
    if file_name == "dataset_info.json":  # the same, with this dataset_info.json instead
        (folder / "dataset_info.json").write_bytes(raw)
        try:
            got = load_examples(DataConfig(dataset_dir=str(folder)), ["fz"], "sft")[0]
        except DataError as exc:
            got = str(exc)
    if error is None:
        assert isinstance(got, list) and len(got[0]["messages"][0]["content"]) == len(LONG_CELL)
    else:
        assert isinstance(got, str) and error in got and "\n" not in got


@pytest.mark.parametrize("name, text, error", [
    ("yaml_nested_5000_deep", "lora_target: " + "[" * 5000 + "\n", "not valid YAML (nested too deeply)"),
    ("yaml_key_a_number", "model_name_or_path: m\n1: 2\n", "key 1 is not a name"),
    ("yaml_key_yes", "yes: no\n", "key True is not a name"),
])
def test_found_by_fuzzing_in_yaml(tmp_path, name, text, error):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {error}")):
        read_yaml(path)


@pytest.mark.parametrize("name, file_name, text, error", [
    ("eval_csv_cell_over_128_KiB", "s_test.csv", f"question,A,B,C,D,answer\n{LONG_CELL},1,2,3,4,A\n", None),
    ("eval_json_integer_of_5000_digits", "s_test.json", '[{"question": ' + "9" * 5000 + "}]",
     "a number in the JSON is too long to read"),
])
def test_found_by_fuzzing_in_eval_tasks(tmp_path, name, file_name, text, error):
    path = tmp_path / file_name
    path.write_text(text, encoding="utf-8")
    if error is None:
        assert len(read_questions(path)[0].question) == len(LONG_CELL)
    else:
        with pytest.raises(DataError, match=re.escape(f"{path}: {error}")):
            read_questions(path)


def main() -> None:
    """Count outcomes of every property instead of stopping at the first failure."""
    global TALLY
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from transformers import AutoTokenizer

    from tuneforge.model import tiny

    tok = AutoTokenizer.from_pretrained(tiny.ensure())
    for test in (test_records_load_or_name_the_record, test_files_load_or_name_the_file,
                 test_good_files_read_the_same_in_every_encoding,
                 test_dataset_info_loads_or_names_itself,
                 test_yaml_configs_read_or_name_the_file, test_eval_task_files_read_or_name_the_file):
        TALLY = Counter()
        test(tok) if "tokenizer" in inspect.signature(test).parameters else test()
        print(f"{test.__name__}: {sum(TALLY.values())} cases")
        for outcome, count in TALLY.most_common():
            print(f"  {count:5d}  {outcome}  {EXAMPLES.get(outcome, '')}")
        EXAMPLES.clear()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
