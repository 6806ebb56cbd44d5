"""`tuneforge eval`: task files, prompts, accuracy arithmetic (with a scorer whose answers we choose),
a real run of the tiny model on the built-in tinybench, and bad input through the CLI."""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import assert_one_error_line, run_cli, write_yaml
from tuneforge.config.errors import ConfigError, DataError
from tuneforge.config.load import load
from tuneforge.data.example import Message
from tuneforge.evaluate import bench

LETTERS = "ABCD"


def write_csv(path: Path, rows: list[list[str]], header: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def questions(subject: str, split: str, n: int) -> list[list[str]]:
    """Question i of a split has answer LETTERS[i % 4]; its text names subject, split and i."""
    return [[f"{subject} {split} question {i}?", "one", "two", "three", "four", LETTERS[i % 4]] for i in range(n)]


# subject -> (category, test questions, how many of them the fake model gets right)
PLAN = {"algebra": ("STEM", 8, 5), "physics": ("STEM", 4, 3), "history": ("Humanities", 8, 8)}


@pytest.fixture
def task_dir(tmp_path) -> Path:
    root = tmp_path / "tasks"
    folder = root / "quiz"
    folder.mkdir(parents=True)
    mapping = {key: {"name": key.title(), "category": category} for key, (category, _, _) in PLAN.items()}
    (folder / "mapping.json").write_text(json.dumps(mapping))
    for key, (_, n_test, _) in PLAN.items():
        write_csv(folder / "dev" / f"{key}.csv", questions(key, "dev", 4), ["question", "A", "B", "C", "D", "answer"])
        write_csv(folder / "test" / f"{key}.csv", questions(key, "test", n_test),
                  ["question", "A", "B", "C", "D", "answer"])
    return root


class FakeScorer:
    """Answers question i of a subject correctly when i < PLAN[subject][2], else one letter later (wrong)."""

    def __init__(self):
        self.prompts: list[str] = []

    def prompt(self, messages: list[Message]) -> str:
        return "\n<turn>\n".join(f"{m.role}: {m.content}" for m in messages)

    def choose(self, prompts: list[str]) -> list[str]:
        letters = []
        for prompt in prompts:
            self.prompts.append(prompt)
            last = prompt.rsplit("<turn>", 1)[-1]
            subject, _, rest = last.split(": ", 1)[1].partition(" test question ")
            subject = subject.rsplit("\n", 1)[-1]
            i = int(rest.split("?")[0])
            right = LETTERS[i % 4]
            letters.append(right if i < PLAN[subject][2] else LETTERS[(i + 1) % 4])
        return letters


def config(tmp_path: Path, **keys):
    cfg, _ = load(base={"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink", "do_train": False,
                        **keys})
    return cfg


def test_accuracy_per_subject_category_and_average(tmp_path, task_dir, caplog):
    cfg = config(tmp_path, task="quiz_test", task_dir=str(task_dir), n_shot=2, save_dir=str(tmp_path / "res"))
    scorer = FakeScorer()
    with caplog.at_level("INFO", logger="tuneforge"):
        result, json_path, log_path = bench.run_benchmark(cfg, scorer=scorer)
    assert "eval: algebra: 62.50 (5/8)" in caplog.messages
    assert len(scorer.prompts) == 20
    data = json.loads(json_path.read_text())
    # algebra 5/8 = 62.5, physics 3/4 = 75, history 8/8 = 100
    assert {k: (v["correct"], v["total"], v["accuracy"]) for k, v in data["subjects"].items()} == {
        "algebra": (5, 8, 62.5), "physics": (3, 4, 75.0), "history": (8, 8, 100.0)}
    # categories and Average pool the questions (LLaMA-Factory): STEM (5 + 3) / (8 + 4) = 66.6667 (the mean
    # of subject scores would be (62.5 + 75) / 2 = 68.75); Humanities 8/8 = 100; Average 16/20 = 80
    # (not (62.5 + 75 + 100) / 3 = 79.1667)
    assert data["categories"] == {"STEM": {"accuracy": 66.6667, "correct": 8, "total": 12},
                                  "Humanities": {"accuracy": 100.0, "correct": 8, "total": 8}}
    assert data["Average"] == 80.0
    assert data["subjects"]["algebra"]["predictions"] == ["A", "B", "C", "D", "A", "C", "D", "A"]
    assert data["task"] == "quiz_test" and data["n_shot"] == 2
    log = log_path.read_text()
    assert "Average: 80.00" in log and "STEM: 66.67" in log and "Humanities: 100.00" in log
    assert "Social Sciences" not in log  # only categories that have subjects
    assert "algebra" in log and "62.50" in log
    assert result.scores() == pytest.approx({"Average": 80.0, "STEM": 200 / 3, "Humanities": 100.0})


def test_prompt_wording_and_few_shot_turns(task_dir):
    task = bench.load_task("quiz_test", task_dir, n_shot=2)
    algebra = task.subjects[0]
    assert [q.answer for q in algebra.dev] == ["A", "B"]  # the first n_shot dev rows, in file order
    messages = bench.build_messages(algebra, algebra.test[3], "en")
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0].content == ("The following are multiple choice questions (with answers) about Algebra.\n\n"
                                   "algebra dev question 0?\nA. one\nB. two\nC. three\nD. four\nAnswer:")
    assert messages[1].content == "A" and messages[3].content == "B"
    assert messages[4].content == "algebra test question 3?\nA. one\nB. two\nC. three\nD. four\nAnswer:"
    zh = bench.build_messages(algebra, algebra.test[0], "zh")
    assert zh[0].content.startswith("以下是中国关于Algebra考试的单项选择题，请选出其中的正确答案。\n\n")
    assert zh[-1].content.endswith("\n答案：")
    zero = bench.load_task("quiz_test", task_dir, n_shot=0).subjects[0]
    assert [m.role for m in bench.build_messages(zero, zero.test[0], "en")] == ["user"]


def test_file_layouts(tmp_path):
    """C-Eval's <subject>_val.csv with extra columns, MMLU's header-less CSV, JSON and JSONL."""
    folder = tmp_path / "mix"
    (folder / "val").mkdir(parents=True)
    (folder / "mapping.json").write_text(json.dumps({
        "ceval_like": {"name": "计算机网络", "category": "STEM"}, "mmlu_like": {"name": "law", "category": "Other"},
        "json_like": {"name": "art", "category": "Humanities"},
        "jsonl_like": {"name": "econ", "category": "Social Sciences"}}))
    write_csv(folder / "val" / "ceval_like_val.csv", [["0", "问题？", "甲", "乙", "丙", "丁", "c", "因为"]],
              ["id", "question", "A", "B", "C", "D", "answer", "explanation"])
    write_csv(folder / "val" / "mmlu_like.csv", [["Q?", "w", "x", "y", "z", "D"], ["R?", "w", "x", "y", "z", "A"]])
    (folder / "val" / "json_like.json").write_text(json.dumps([{"Question": "J?", "A": 1, "B": 2, "C": 3, "D": 4,
                                                                 "Answer": "B"}]))
    (folder / "val" / "jsonl_like.jsonl").write_text('{"question": "L?", "A": "a", "B": "b", "C": "c", "D": "d", '
                                                     '"answer": "A"}\n\n')
    task = bench.load_task("mix_validation", tmp_path, n_shot=0)
    assert task.split == "validation"
    got = {s.key: [(q.question, q.choices, q.answer) for q in s.test] for s in task.subjects}
    assert got == {"ceval_like": [("问题？", ("甲", "乙", "丙", "丁"), "C")],
                   "mmlu_like": [("Q?", ("w", "x", "y", "z"), "D"), ("R?", ("w", "x", "y", "z"), "A")],
                   "json_like": [("J?", ("1", "2", "3", "4"), "B")],
                   "jsonl_like": [("L?", ("a", "b", "c", "d"), "A")]}
    assert bench.parse_task("ceval_validation") == ("ceval", "validation")
    assert bench.parse_task("mmlu") == ("mmlu", "test")


def test_builtin_tinybench_is_found_from_any_task_dir(tmp_path):
    task = bench.load_task("tinybench_test", tmp_path / "nowhere", n_shot=4)
    assert task.folder == bench.BUILTIN_DIR / "tinybench"
    assert [(s.key, s.category, len(s.dev), len(s.test)) for s in task.subjects] == [
        ("elementary_mathematics", "STEM", 4, 8), ("world_geography", "Social Sciences", 4, 8),
        ("chinese_culture", "Humanities", 4, 8)]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in task.subjects[2].test[0].question)  # a Chinese subject


def test_malformed_files_name_file_and_row(tmp_path, task_dir):
    bad = task_dir / "quiz" / "test" / "physics.csv"
    write_csv(bad, questions("physics", "test", 2) + [["Q?", "a", "b", "c", "d", "E"]],
              ["question", "A", "B", "C", "D", "answer"])
    with pytest.raises(DataError, match=r"physics\.csv row 4: 'answer' must be one of A, B, C, D, got 'E'"):
        bench.load_task("quiz_test", task_dir, n_shot=0)
    write_csv(bad, [["Q?", "a", "b"]], ["question", "A", "B"])
    with pytest.raises(DataError, match="header row with question, A, B, C, D, answer"):
        bench.load_task("quiz_test", task_dir, n_shot=0)
    bad.unlink()
    with pytest.raises(DataError, match="subject 'physics' has no test file"):
        bench.load_task("quiz_test", task_dir, n_shot=0)
    (task_dir / "quiz" / "mapping.json").write_text(json.dumps({"algebra": {"name": "A", "category": "Maths"}}))
    with pytest.raises(DataError, match="category"):
        bench.load_task("quiz_test", task_dir, n_shot=0)


def test_save_dir_rules(tmp_path):
    with pytest.raises(ConfigError, match="'save_dir' is required"):
        bench.check_save_dir(None)
    folder = tmp_path / "res"
    folder.mkdir()
    (folder / "results.json").write_text("{}")
    (folder / "results.log").write_text("")
    assert bench.check_save_dir(str(folder)) == folder  # an earlier run's results may be replaced
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty.*notes.txt"):
        bench.check_save_dir(str(folder))


def test_logit_scorer_batches_like_single_prompts(tmp_path):
    """Left padding must not change the choice: batch_size 4 picks what batch_size 1 picks, and
    batch_size 1 picks the argmax of the letters' logits computed by hand."""
    import torch

    from tuneforge.infer.hf import HFEngine

    cfg = config(tmp_path)
    engine = HFEngine(cfg.model, cfg.data, cfg.generate)
    task = bench.load_task("tinybench_test", tmp_path, n_shot=1)
    prompts = [bench.LogitScorer(engine, 1).prompt(bench.build_messages(s, q, "en"))
               for s in task.subjects for q in s.test[:4]]
    single = bench.LogitScorer(engine, 1).choose(prompts)
    assert bench.LogitScorer(engine, 4).choose(prompts) == single
    ids = [engine.tokenizer.encode(letter, add_special_tokens=False)[-1] for letter in LETTERS]
    with torch.inference_mode():
        inputs = engine.tokenizer(prompts[0], add_special_tokens=False, return_tensors="pt")
        logits = engine.model(**inputs).logits[0, -1, ids]
    assert single[0] == LETTERS[int(logits.argmax())]


@pytest.mark.slow
def test_tiny_model_on_tinybench_through_the_cli(tmp_path):
    save = tmp_path / "tinybench"
    cfg = write_yaml(tmp_path / "eval.yaml", model_name_or_path="tuneforge/tiny", template="qwen3_nothink",
                     task="tinybench_test", n_shot=2, lang="en", save_dir=str(save), batch_size=8)
    proc = run_cli("eval", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((save / "results.json").read_text())
    assert set(data["subjects"]) == {"elementary_mathematics", "world_geography", "chinese_culture"}
    assert all(s["total"] == 8 and len(s["predictions"]) == 8 and set(s["predictions"]) <= set(LETTERS)
               for s in data["subjects"].values())
    correct = sum(s["correct"] for s in data["subjects"].values())
    assert data["Average"] == pytest.approx(100 * correct / 24, abs=1e-4)
    assert set(data["categories"]) == {"STEM", "Social Sciences", "Humanities"}
    assert "Average:" in (save / "results.log").read_text()
    assert "Average:" in proc.stdout and "chinese_culture" in proc.stdout
    print(f"tiny model on tinybench: {data['Average']:.2f} ({correct}/24)")


# ------------------------------------------------------------------------------ bad input via the CLI
BAD_CASES = {
    "missing_task": (dict(task="nosuch_test"), ("task 'nosuch_test'", "tinybench_test")),
    "no_task_key": (dict(task=None), ("'task' is required",)),
    "missing_save_dir": (dict(save_dir=None), ("'save_dir' is required",)),
    "malformed_task_file": (dict(task="broken_test"), ("broken", "algebra.csv", "row 2", "'answer' must be one of")),
    "non_empty_save_dir": (dict(save_dir="taken"), ("save_dir", "not empty", "other.txt")),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    def run(name: str):
        root = tmp_path_factory.mktemp(name)
        broken = root / "evaluation" / "broken"
        broken.mkdir(parents=True)
        (broken / "mapping.json").write_text(json.dumps({"algebra": {"name": "algebra", "category": "STEM"}}))
        write_csv(broken / "test" / "algebra.csv", [["1+1?", "1", "2", "3", "4", "two"]],
                  ["question", "A", "B", "C", "D", "answer"])
        (root / "taken").mkdir()
        (root / "taken" / "other.txt").write_text("keep me")
        keys = {"model_name_or_path": "tuneforge/tiny", "template": "qwen3_nothink", "task": "tinybench_test",
                "n_shot": 0, "save_dir": "results"}
        keys.update(BAD_CASES[name][0])
        cfg = write_yaml(root / "eval.yaml", **{k: v for k, v in keys.items() if v is not None})
        return run_cli("eval", str(cfg), cwd=root, timeout=120), root

    tmp_path_factory.getbasetemp()  # made once here: threads making it at once race
    with ThreadPoolExecutor(3) as pool:
        return dict(zip(BAD_CASES, pool.map(run, BAD_CASES)))


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_input_is_one_error_line(bad_runs, name):
    proc, root = bad_runs[name]
    assert_one_error_line(proc, *BAD_CASES[name][1])
    assert not (root / "results").exists()  # nothing written
