"""Go's text/template, the part Ollama's chat templates use, in Python: no ollama binary or Go
toolchain is needed to render a Modelfile's TEMPLATE in the tests.

Supported: text and actions with `{{-`/`-}}` trimming; `if`/`else if`/`else`/`end`;
`range $i, $x := pipeline` and `range pipeline`; `$x := v` and `$x = v` (assignment reaches the
declaring scope, as in Go); fields (`.A.B`, `$x.A`, `(expr).A`); string, int and bool literals; the
builtins and, or (short-circuit, returning an operand), not, eq, ne, lt, le, gt, ge, len, index,
slice, print, printf (%s, %v, %d); Go's truth (false, 0, "", nil and empty lists/maps are false).
Printed values use str(), so a value standing for a Go type with a String() method prints itself.
Ollama's data is given as dicts (structs) and lists; `GoJSON` stands for its JSON-printing types.
"""

from __future__ import annotations

import json
import re
from typing import Any

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|`[^`]*`|:=|=|,|\(|\)|-?\d+|\$\.\w+(?:\.\w+)*|\$?[A-Za-z_]\w*(?:\.\w+)*|\$|\.(?:\w+(?:\.\w+)*)?)')


class GoJSON:
    """A value Ollama prints with encoding/json (api.Tool, tool-call arguments): compact, keys sorted
    (Go marshals maps sorted; structs in field order, which the tests do not depend on)."""

    def __init__(self, value: Any):
        self.value = value

    def __str__(self) -> str:
        text = json.dumps(self.value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")

    def __bool__(self) -> bool:
        return True


def truth(value: Any) -> bool:
    if isinstance(value, (list, dict, str)):
        return len(value) > 0
    return bool(value) if value is not None else False


def go_print(*args: Any) -> str:
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += fmt(arg)
    return out


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<no value>"
    return str(value)


def printf(form: str, *args: Any) -> str:
    values = iter(args)
    return re.sub(r"%[svd]", lambda m: fmt(next(values)), form)


FUNCS = {
    "not": lambda x: not truth(x), "eq": lambda a, *b: any(a == x for x in b), "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "len": len, "index": lambda x, *keys: _index(x, keys), "print": go_print, "printf": printf,
    "slice": lambda x, *ix: x[ix[0]:ix[1]] if len(ix) > 1 else x[ix[0]:] if ix else x,
}


def _index(value: Any, keys: tuple) -> Any:
    for key in keys:
        value = value[key]
    return value


def parse(template: str) -> list:
    """-> nested nodes: str | ("out", expr) | ("set"/"assign", name, expr) | ("if", [(cond, body)...], else_body)
    | ("range", names, expr, body)."""
    pieces: list = []
    pos = 0
    for match in ACTION.finditer(template):
        chunk = template[pos:match.start()]
        if match.group(1):
            chunk = chunk.rstrip()
        if pieces and isinstance(pieces[-1], tuple) and pieces[-1][0] == "trim":
            chunk = chunk.lstrip()
            pieces.pop()
        pieces.append(chunk)
        pieces.append(("act", match.group(2).strip()))
        if match.group(3):
            pieces.append(("trim",))
        pos = match.end()
    tail = template[pos:]
    if pieces and pieces[-1] == ("trim",):
        pieces.pop()
        tail = tail.lstrip()
    pieces.append(tail)
    nodes, rest = _block(iter(pieces), top=True)
    return nodes


def _block(pieces, top: bool = False):
    nodes: list = []
    for piece in pieces:
        if isinstance(piece, str):
            if piece:
                nodes.append(piece)
            continue
        if piece[0] == "trim":
            continue
        words = piece[1]
        keyword = words.split(None, 1)[0] if words else ""
        if keyword in ("end", "else"):
            return nodes, words
        if keyword == "if":
            nodes.append(_if(words[2:], pieces))
        elif keyword == "range":
            head = words[5:].strip()
            names: list[str] = []
            if ":=" in head:
                left, head = head.split(":=", 1)
                names = [n.strip() for n in left.split(",")]
            body, end = _block(pieces)
            assert end == "end", f"range closed by {end!r}"
            nodes.append(("range", names, expr(head), body))
        elif re.match(r"^\$\w+\s*:=", words):
            name, value = words.split(":=", 1)
            nodes.append(("set", name.strip(), expr(value)))
        elif re.match(r"^\$\w+\s*=[^=]", words):
            name, value = words.split("=", 1)
            nodes.append(("assign", name.strip(), expr(value)))
        else:
            nodes.append(("out", expr(words)))
    assert top, "template ended inside a block"
    return nodes, None


def _if(condition: str, pieces) -> tuple:
    branches = []
    cond = expr(condition)
    while True:
        body, end = _block(pieces)
        branches.append((cond, body))
        if end == "end":
            return ("if", branches, [])
        if end.startswith("else if"):
            cond = expr(end[len("else if"):])
            continue
        assert end == "else", end
        body, end = _block(pieces)
        assert end == "end", end
        return ("if", branches, body)


def expr(source: str) -> list:
    tokens = [t for t in TOKEN.findall(source)]
    assert "".join(tokens).replace(" ", "") == source.replace(" ", "").replace("\n", ""), source
    value, rest = _command(tokens)
    assert not rest, f"left over in {source!r}: {rest}"
    return value


def _command(tokens: list[str]) -> tuple[list, list[str]]:
    """A command: operands up to a closing parenthesis -> ("call", fn, args) or an operand."""
    parts = []
    while tokens and tokens[0] != ")":
        operand, tokens = _operand(tokens)
        parts.append(operand)
    if parts and parts[0][0] == "fn":
        return ["call", parts[0][1], parts[1:]], tokens
    assert len(parts) == 1, parts
    return parts[0], tokens


def _operand(tokens: list[str]) -> tuple[list, list[str]]:
    token, tokens = tokens[0], tokens[1:]
    if token == "(":
        inner, tokens = _command(tokens)
        tokens = tokens[1:]
        if tokens and tokens[0].startswith(".") and tokens[0] != ".":
            fields, tokens = tokens[0][1:].split("."), tokens[1:]
            return ["field", inner, fields], tokens
        return inner, tokens
    if token.startswith('"'):
        return ["lit", json.loads(token)], tokens
    if token.startswith("`"):
        return ["lit", token[1:-1]], tokens
    if re.fullmatch(r"-?\d+", token):
        return ["lit", int(token)], tokens
    if token in ("true", "false"):
        return ["lit", token == "true"], tokens
    if token == "nil":
        return ["lit", None], tokens
    if token.startswith("$") or token.startswith("."):
        return ["ref", token], tokens
    return ["fn", token], tokens


class Scope:
    def __init__(self, parent: Scope | None = None):
        self.parent, self.vars = parent, {}

    def find(self, name: str) -> Scope:
        scope = self
        while scope is not None and name not in scope.vars:
            scope = scope.parent
        if scope is None:
            raise NameError(f"undefined variable {name}")
        return scope


def _field(value: Any, names: list[str]) -> Any:
    for name in names:
        value = value.get(name) if isinstance(value, dict) else getattr(value, name)
    return value


def evaluate(node: list, dot: Any, scope: Scope) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ref":
        token = node[1]
        if token.startswith("$"):
            name, *fields = token.split(".")
            return _field(scope.find(name).vars[name], fields)
        return dot if token == "." else _field(dot, token[1:].split("."))
    if kind == "field":
        return _field(evaluate(node[1], dot, scope), node[2])
    name, args = node[1], node[2]
    if name in ("and", "or"):
        value = None
        for arg in args:
            value = evaluate(arg, dot, scope)
            if truth(value) == (name == "or"):
                return value
        return value
    return FUNCS[name](*(evaluate(a, dot, scope) for a in args))


def execute(nodes: list, dot: Any, scope: Scope, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "out":
            out.append(fmt(evaluate(node[1], dot, scope)))
        elif node[0] == "set":
            scope.vars[node[1]] = evaluate(node[2], dot, scope)
        elif node[0] == "assign":
            scope.find(node[1]).vars[node[1]] = evaluate(node[2], dot, scope)
        elif node[0] == "if":
            for cond, body in node[1]:
                if truth(evaluate(cond, dot, scope)):
                    execute(body, dot, Scope(scope), out)
                    break
            else:
                execute(node[2], dot, Scope(scope), out)
        elif node[0] == "range":
            for i, item in enumerate(evaluate(node[2], dot, scope) or []):
                inner = Scope(scope)
                names = node[1]
                if len(names) == 2:
                    inner.vars[names[0]], inner.vars[names[1]] = i, item
                elif len(names) == 1:
                    inner.vars[names[0]] = item
                execute(node[3], item, inner, out)


def render(template: str, data: dict[str, Any]) -> str:
    scope = Scope()
    scope.vars["$"] = data
    out: list[str] = []
    execute(parse(template), data, scope, out)
    return "".join(out)
