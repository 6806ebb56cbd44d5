"""Multiple-choice benchmark accuracy in the MMLU / C-Eval / CMMLU style (`tuneforge eval`).

Task files
----------
A task is a folder `<task_dir>/<name>/`::

    mapping.json              {"<subject>": {"name": "<shown in the prompt>", "category": "STEM"}, ...}
    dev/<subject>.csv         few-shot examples (n_shot of them, taken in file order)
    test/<subject>.csv        the questions that are scored (any split name: validation/, val/, ...)

`category` is one of STEM, Humanities, Social Sciences, Other. A split file may also be named
`<subject>_<split>.csv` (C-Eval's layout), and be `.json` (a list of objects) or `.jsonl` (one
object per line) instead of CSV. Every row has `question`, `A`, `B`, `C`, `D` and `answer` (one of
the letters); the names are matched without regard to case, other columns (id, explanation, an
unnamed index) are ignored, and a CSV file without a header row is read as MMLU's six columns
(question, A, B, C, D, answer).

`task: mmlu_test` means the task folder `mmlu` and its `test` split (LLaMA-Factory's naming;
`validation` also finds a `val/` folder); a bare `task: mmlu` means its `test` split. The folder is
looked up in `task_dir` first, then among the tasks shipped with tuneforge (`evaluate/builtin/`:
`tinybench`).

Scoring
-------
Each question becomes a conversation: n_shot dev questions with their answer letters as earlier
turns, then the question, all rendered with the config's template and its generation prompt. The
first user turn starts with the subject line ("The following are multiple choice questions (with
answers) about {subject}." for lang en, "以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。"
for zh) and each question ends with the answer cue ("Answer:" / "答案："). The model's choice is the
letter whose token has the highest next-token logit after the prompt (the token the tokenizer gives
the bare letter, as LLaMA-Factory does). Accuracy (x100) is reported per subject, per category
and as `Average`; categories and Average pool the questions (micro average), like LLaMA-Factory.
Results go to `save_dir/results.json` and `save_dir/results.log`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tuneforge.config.errors import ConfigError, DataError
from tuneforge.config.schema import RunConfig
from tuneforge.data.example import Message
from tuneforge.data.readers import read_file
from tuneforge.log import note
from tuneforge.textfile import TextProblem, open_text, parse_json, read_text

BUILTIN_DIR = Path(__file__).parent / "builtin"
CHOICES = ("A", "B", "C", "D")
CATEGORIES = ("STEM", "Social Sciences", "Humanities", "Other")
COLUMNS = ("question",) + CHOICES + ("answer",)
SPLIT_ALIASES = {"validation": ("validation", "val"), "val": ("val", "validation"), "dev": ("dev",),
                 "test": ("test",), "train": ("train",)}
SUFFIXES = (".csv", ".json", ".jsonl")
RESULT_FILES = ("results.json", "results.log")


@dataclass(frozen=True)
class Wording:
    subject_line: str  # starts the first user turn; {subject} is the mapping's name
    choice: str  # one line per choice
    answer: str  # ends every question


WORDING = {
    "en": Wording("The following are multiple choice questions (with answers) about {subject}.\n\n",
                  "\n{letter}. {text}", "\nAnswer:"),
    "zh": Wording("以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n", "\n{letter}. {text}", "\n答案："),
}



# ---------------------------------------------------------------------------------------- task files
@dataclass
class Question:
    question: str
    choices: tuple[str, str, str, str]
    answer: str  # "A".."D"
    source: str = ""  # "file row N"


@dataclass
class Subject:
    key: str
    name: str
    category: str
    test: list[Question]
    dev: list[Question] = field(default_factory=list)


@dataclass
class Task:
    name: str
    split: str
    folder: Path
    subjects: list[Subject]

    @property
    def title(self) -> str:
        return f"{self.name}_{self.split}"


def parse_task(task: str) -> tuple[str, str]:
    """'mmlu_test' -> ('mmlu', 'test'); 'ceval_validation' -> ('ceval', 'validation'); 'mmlu' -> ('mmlu', 'test')."""
    name, sep, split = task.rpartition("_")
    if sep and name and split in SPLIT_ALIASES:
        return name, split
    return task, "test"


def find_task_folder(task: str, task_dir: str | Path) -> tuple[Path, str, str]:
    """(folder, name, split) of a task: task_dir first, then the built-in tasks."""
    candidates = [parse_task(task), (task, "test")]  # a folder may itself be named like 'x_test'
    for base in (Path(task_dir), BUILTIN_DIR):
        for name, split in candidates:
            if (base / name / "mapping.json").is_file():
                return base / name, name, split
    name = parse_task(task)[0]
    builtin = sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "mapping.json").is_file())
    raise ConfigError(f"task '{task}': no {Path(task_dir) / name / 'mapping.json'} in task_dir '{task_dir}' and no "
                      f"built-in task '{name}' (built-in: {', '.join(f'{b}_test' for b in builtin)}); task is "
                      "<folder>_<split>, e.g. mmlu_test")


def _read_mapping(path: Path) -> dict[str, dict[str, str]]:
    try:
        mapping = parse_json(read_text(path))
    except TextProblem as exc:
        raise DataError(str(exc), source=str(path)) from None
    if not isinstance(mapping, dict) or not mapping:
        raise DataError('expected an object {"<subject>": {"name": ..., "category": ...}} with at least one subject',
                        source=str(path))
    for key, entry in mapping.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise DataError(f"subject '{key}' needs a \"name\" (the subject as the prompt shows it)", source=str(path))
        if entry.get("category") not in CATEGORIES:
            raise DataError(f"subject '{key}': \"category\" must be one of {', '.join(CATEGORIES)}, got "
                            f"{entry.get('category')!r}", source=str(path))
    return mapping


def _split_file(folder: Path, subject: str, split: str) -> Path | None:
    for directory in SPLIT_ALIASES.get(split, (split,)):
        for stem in (subject, f"{subject}_{directory}"):
            for suffix in SUFFIXES:
                path = folder / directory / f"{stem}{suffix}"
                if path.is_file():
                    return path
    return None


def _keys(row: dict[Any, Any]) -> dict[str, Any]:
    """Column names matched without regard to case, spaces or a byte-order mark."""
    return {str(k).lstrip("\ufeff").strip().lower(): v for k, v in row.items()}


def _rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, row with lower-cased keys) for every record of a CSV / JSON / JSONL split file, read
    by `tuneforge.data.readers` (the dataset reader: line numbers in its errors)."""
    records = list(read_file(path))
    if path.suffix == ".csv":
        header = _keys(records[0][1]) if records else {}
        if not records or not all(col.lower() in header for col in COLUMNS):
            return _headerless_csv(path)
        filled = [(where, row) for where, row in records if any(str(v).strip() for v in row.values() if v is not None)]
        return [(where.replace("line", "row", 1), _keys(row)) for where, row in filled]
    out = []
    for where, row in records:
        if not isinstance(row, dict):
            raise DataError(f"expected an object with {', '.join(COLUMNS)}", source=str(path), record=where)
        out.append((where, _keys(row)))
    return out


def _headerless_csv(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """MMLU's CSV files: no header row, six columns (question, A, B, C, D, answer). data.readers reads
    CSV by its header row only, so these rows are taken here."""
    try:
        with open_text(path, newline="") as handle:
            table = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except TextProblem as exc:
        raise DataError(str(exc), source=str(path)) from None
    except csv.Error as exc:
        raise DataError(f"not valid CSV: {exc}", source=str(path)) from None
    if not table or all(col.lower() in [cell.strip().lower() for cell in table[0]] for col in COLUMNS):
        return []  # empty, or a header row and nothing under it
    if len(table[0]) == 6:
        return [(f"row {n}", dict(zip((c.lower() for c in COLUMNS), row))) for n, row in enumerate(table, start=1)]
    raise DataError("needs a header row with question, A, B, C, D, answer (or MMLU's six unnamed columns); "
                    f"the first row is {','.join(table[0])[:120]!r}", source=str(path))


def read_questions(path: Path) -> list[Question]:
    """The questions of one split file (CSV with a header or MMLU's six columns, JSON list, JSONL)."""
    questions = []
    for where, row in _rows(path):
        missing = [col for col in COLUMNS if row.get(col.lower()) is None]
        if missing:
            raise DataError(f"'{missing[0]}' is missing (a question needs {', '.join(COLUMNS)})",
                            source=str(path), record=where)
        question = str(row["question"]).strip()
        if not question:
            raise DataError("'question' is empty", source=str(path), record=where)
        answer = str(row["answer"]).strip().upper()
        if answer not in CHOICES:
            raise DataError(f"'answer' must be one of {', '.join(CHOICES)}, got {row['answer']!r}",
                            source=str(path), record=where)
        choices = tuple(str(row[c.lower()]).strip() for c in CHOICES)
        questions.append(Question(question, choices, answer, f"{path} {where}"))  # type: ignore[arg-type]
    if not questions:
        raise DataError("has no questions", source=str(path))
    return questions


def load_task(task: str, task_dir: str | Path, n_shot: int) -> Task:
    """Read and check every file of a task (before any model loads)."""
    folder, name, split = find_task_folder(task, task_dir)
    mapping = _read_mapping(folder / "mapping.json")
    subjects = []
    for key, entry in mapping.items():
        test_path = _split_file(folder, key, split)
        if test_path is None:
            raise DataError(f"subject '{key}' has no {split} file (looked for {folder / split / key}.csv, .json, "
                            f".jsonl and {key}_{split}.*)", source=str(folder / "mapping.json"))
        dev: list[Question] = []
        if n_shot:
            dev_path = _split_file(folder, key, "dev")
            if dev_path is None:
                raise DataError(f"n_shot is {n_shot} but subject '{key}' has no dev file ({folder / 'dev' / key}.csv); "
                                "add few-shot examples or set n_shot: 0", source=str(folder / "mapping.json"))
            dev = read_questions(dev_path)[:n_shot]
        subjects.append(Subject(key, entry["name"].strip(), entry["category"], read_questions(test_path), dev))
    return Task(name, split, folder, subjects)


# ---------------------------------------------------------------------------------------- prompts
def format_question(question: Question, lang: str) -> str:
    """Question text, one line per choice, then the answer cue."""
    wording = WORDING[lang]
    return (question.question + "".join(wording.choice.format(letter=letter, text=text)
                                        for letter, text in zip(CHOICES, question.choices)) + wording.answer)


def build_messages(subject: Subject, question: Question, lang: str) -> list[Message]:
    """Few-shot turns (dev question -> answer letter), then the question; the subject line opens the first turn."""
    messages: list[Message] = []
    for shot in subject.dev:
        messages += [Message("user", format_question(shot, lang)), Message("assistant", shot.answer)]
    messages.append(Message("user", format_question(question, lang)))
    messages[0] = Message("user", WORDING[lang].subject_line.format(subject=subject.name) + messages[0].content)
    return messages


class ChoiceScorer(Protocol):
    """What the benchmark needs from a model: render a conversation, pick a letter per prompt."""

    def prompt(self, messages: list[Message]) -> str: ...

    def choose(self, prompts: list[str]) -> list[str]: ...


class LogitScorer:
    """The letter (A-D) whose token has the highest next-token logit after each prompt."""

    def __init__(self, engine: Any, batch_size: int):
        self.engine, self.batch_size = engine, batch_size
        tokenizer = engine.tokenizer
        self.choice_ids = [tokenizer.encode(letter, add_special_tokens=False)[-1] for letter in CHOICES]
        if len(set(self.choice_ids)) != len(CHOICES):
            raise ConfigError(f"the tokenizer gives the letters {', '.join(CHOICES)} the same token; "
                              "cannot score choices")

    def prompt(self, messages: list[Message]) -> str:
        return self.engine.prompt_text(messages)

    def choose(self, prompts: list[str]) -> list[str]:
        import torch

        model = self.engine.model
        letters: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            # left-padded: the last position is every prompt's last token
            inputs = self.engine.encode(prompts[start:start + self.batch_size])
            positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                try:
                    logits = model(**inputs, position_ids=positions, logits_to_keep=1).logits
                except TypeError:  # a model without logits_to_keep
                    logits = model(**inputs, position_ids=positions).logits
            best = logits[:, -1, self.choice_ids].float().argmax(-1).tolist()
            letters += [CHOICES[i] for i in best]
        return letters


# ---------------------------------------------------------------------------------------- results
@dataclass
class SubjectResult:
    key: str
    name: str
    category: str
    predictions: list[str]
    answers: list[str]

    @property
    def correct(self) -> int:
        return sum(p == a for p, a in zip(self.predictions, self.answers))

    @property
    def total(self) -> int:
        return len(self.answers)

    @property
    def accuracy(self) -> float:
        return 100 * self.correct / self.total


@dataclass
class BenchResult:
    task: str
    n_shot: int
    lang: str
    model: str
    subjects: list[SubjectResult]

    def pooled(self) -> dict[str, tuple[int, int]]:
        """'Average' and each category present -> (correct, total), questions pooled."""
        out: dict[str, tuple[int, int]] = {"Average": (sum(s.correct for s in self.subjects),
                                                       sum(s.total for s in self.subjects))}
        for category in CATEGORIES:
            members = [s for s in self.subjects if s.category == category]
            if members:
                out[category] = (sum(s.correct for s in members), sum(s.total for s in members))
        return out

    def scores(self) -> dict[str, float]:
        """'Average' and per-category accuracy (x100)."""
        return {name: 100 * correct / total for name, (correct, total) in self.pooled().items()}

    def to_json(self) -> dict[str, Any]:
        pooled = self.pooled()
        return {
            "task": self.task, "n_shot": self.n_shot, "lang": self.lang, "model": self.model,
            "Average": round(100 * pooled["Average"][0] / pooled["Average"][1], 4),
            "categories": {name: {"accuracy": round(100 * c / t, 4), "correct": c, "total": t}
                           for name, (c, t) in pooled.items() if name != "Average"},
            "subjects": {s.key: {"name": s.name, "category": s.category, "accuracy": round(s.accuracy, 4),
                                 "correct": s.correct, "total": s.total, "predictions": s.predictions}
                         for s in self.subjects},
        }

    def table(self) -> str:
        width = max([len(s.key) for s in self.subjects] + [len("subject")])
        lines = [f"task {self.task}, {self.n_shot}-shot, lang {self.lang}, model {self.model}", "",
                 f"{'subject':<{width}}  {'category':<15}  {'accuracy':>8}  correct"]
        for s in self.subjects:
            lines.append(f"{s.key:<{width}}  {s.category:<15}  {s.accuracy:>8.2f}  {s.correct}/{s.total}")
        lines.append("")
        for name, (correct, total) in self.pooled().items():
            lines.append(f"{name:>15}: {100 * correct / total:.2f}  ({correct}/{total})")
        return "\n".join(lines) + "\n"


def check_save_dir(save_dir: str | None, where: str = "config") -> Path:
    """save_dir must be given and be new, empty, or hold only an earlier run's results."""
    if not save_dir:
        raise ConfigError(f"{where}: 'save_dir' is required for eval (results.json and results.log are written there)")
    path = Path(save_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"save_dir '{path}' is a file")
    if path.is_dir():
        others = sorted(p.name for p in path.iterdir() if p.name not in RESULT_FILES)
        if others:
            raise ConfigError(f"save_dir '{path}' is not empty (it holds {', '.join(others[:3])}"
                              f"{' ...' if len(others) > 3 else ''}); choose a new folder")
    return path


def write_results(result: BenchResult, save_dir: Path) -> tuple[Path, Path]:
    from tuneforge.atomic import write_atomic

    save_dir.mkdir(parents=True, exist_ok=True)
    json_path, log_path = save_dir / "results.json", save_dir / "results.log"
    write_atomic(json_path, json.dumps(result.to_json(), ensure_ascii=False, indent=2) + "\n")
    write_atomic(log_path, result.table())
    return json_path, log_path


# ---------------------------------------------------------------------------------------- the run
def evaluate_task(task: Task, scorer: ChoiceScorer, lang: str, n_shot: int, model: str = "") -> BenchResult:
    results = []
    for subject in task.subjects:
        prompts = [scorer.prompt(build_messages(subject, q, lang)) for q in subject.test]
        predictions = scorer.choose(prompts)
        result = SubjectResult(subject.key, subject.name, subject.category, list(predictions),
                               [q.answer for q in subject.test])
        results.append(result)
        note(f"eval: {subject.key}: {result.accuracy:.2f} ({result.correct}/{result.total})")
    return BenchResult(task.title, n_shot, lang, model, results)


def run_benchmark(cfg: RunConfig, *, scorer: ChoiceScorer | None = None) -> tuple[BenchResult, Path, Path]:
    """Check save_dir and every task file, load the model (unless `scorer` is given), score, write results."""
    e, where = cfg.eval, cfg.source or "config"
    if not e.task:
        raise ConfigError(f"{where}: 'task' is required for eval (a task folder and split, e.g. mmlu_test, "
                          "ceval_validation, or the built-in tinybench_test)")
    save_dir = check_save_dir(e.save_dir, where)
    task = load_task(e.task, e.task_dir, e.n_shot)
    note(f"eval: {task.title} from {task.folder}: {len(task.subjects)} subjects, "
         f"{sum(len(s.test) for s in task.subjects)} questions, {e.n_shot}-shot, lang {e.lang}")
    if scorer is None:
        from tuneforge.infer.hf import HFEngine

        if cfg.generate.infer_backend == "vllm":
            note("eval: scores next-token logits with the huggingface backend (infer_backend vllm is for generation)")
        scorer = LogitScorer(HFEngine(cfg.model, cfg.data, cfg.generate), e.batch_size)
    model = cfg.model.model_name_or_path + (f" + {', '.join(cfg.model.adapter_name_or_path)}"
                                            if cfg.model.adapter_name_or_path else "")
    result = evaluate_task(task, scorer, e.lang, e.n_shot, model)
    json_path, log_path = write_results(result, save_dir)
    note(f"eval: average {result.scores()['Average']:.2f}; wrote {json_path} and {log_path}")
    return result, json_path, log_path
