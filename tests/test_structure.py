"""The shape of the package, as ARCHITECTURE.md draws it, checked on the source (AST, no imports):

- imports go one way, down the floors (lazy imports inside functions count too), and no module
  imports another module's private name;
- no import cycle between modules;
- no function over 60 lines, no file over 500.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tuneforge"

# Each top-level part of the package and its floor: a module may import from its own part or from
# a lower floor, never from a higher one. Root modules (log, atomic, the version) are the ground.
FLOORS = {
    "": 0,
    "config": 1,
    "data": 2,
    "model": 3,
    "train": 4, "infer": 4, "export": 4,
    "evaluate": 5, "serve": 5,
    "stages": 6,
    "launch": 4,
    "cli": 7, "webui": 8, "__main__": 8,
}
# The web UI calls the commands' own functions (cli/config.load_config, data check, estimate, predict,
# export), so cli is below it; the one way up is the `webui` command handing the process over to it.
ENTRY_POINTS = {("tuneforge.cli.webui", "tuneforge.webui.app")}
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return ""
    sub = parts[1]
    return sub if (PACKAGE / sub).is_dir() or sub == "__main__" else ""


@functools.lru_cache(maxsize=1)
def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}


def imports(tree: ast.Module) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every tuneforge import, however deep."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tuneforge":
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "tuneforge"]
    return found


def edges() -> dict[str, set[str]]:
    """Module -> the package modules it imports (`from tuneforge.x import y` counts x.y when y is a module)."""
    known = set(modules())
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, tree in modules().items():
        for target, names, _ in imports(tree):
            targets = {f"{target}.{n}" for n in names if f"{target}.{n}" in known} or {target}
            graph[name] |= {t for t in targets if t in known and t != name}
    return graph


def test_imports_go_down_the_floors():
    wrong = []
    for name, tree in modules().items():
        here = part_of(name)
        for target, _, line in imports(tree):
            there = part_of(target)
            if there != here and FLOORS[there] >= FLOORS[here] and (name, target) not in ENTRY_POINTS:
                wrong.append(f"{name}:{line} imports {target} ({there or 'root'} is not below {here or 'root'})")
    assert not wrong, "\n".join(wrong)


def test_every_part_has_a_floor():
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert parts <= set(FLOORS), f"give {sorted(parts - set(FLOORS))} a floor here and in ARCHITECTURE.md"


def test_no_private_name_is_imported_from_another_module():
    wrong = [f"{name}:{line} imports {n} from {target}"
             for name, tree in modules().items() for target, names, line in imports(tree)
             for n in names if n.startswith("_") and not n.startswith("__")]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("limit", [MAX_FUNCTION_LINES])
def test_functions_are_short(limit):
    long = [f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for name, tree in modules().items() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit]
    assert not long, "\n".join(long)


def test_files_are_small():
    big = [f"{p.relative_to(SRC)}: {n} lines" for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES]
    assert not big, "\n".join(big)


def test_the_checks_can_fail():
    """The walkers see real imports and real functions (a broken walker would pass everything)."""
    graph = edges()
    assert "tuneforge.config.schema" in graph["tuneforge.config.load"]
    assert "tuneforge.stages.run" in graph["tuneforge.stages.sft"]
    assert any(len(imports(tree)) > 3 for tree in modules().values())


def test_test_modules_have_unique_names():
    """The test folders are not packages, so pytest imports each test file by its bare name: two files with one
    name in different folders stop the whole suite at collection ("import file mismatch")."""
    from collections import Counter

    names = Counter(path.name for path in (SRC.parent / "tests").rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
