"""Stages never write SQL (docs/architecture.md): outside curate/lake/, no module calls a
connection's `execute(` or holds SQL text; every query is a named read or write in curate/lake/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# a statement's opening, or the clauses no prose has: "SELECT ... FROM", "INSERT INTO", "DELETE FROM"
SQL = re.compile(r"^\s*(SELECT|INSERT|DELETE|UPDATE|CREATE|DROP|ATTACH|COPY)\s|\bSELECT\s.*\sFROM\s|\bINSERT\s+INTO\s"
                 r"|\bDELETE\s+FROM\s|\bJOIN\s+\w+\s+(USING|ON)\b", re.S)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (of the module, a class or a function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _texts(node: ast.AST) -> list[str]:
    """A string literal's text; an f-string's literal parts joined (with a blank for each field)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(part.value if isinstance(part, ast.Constant) else " x " for part in node.values)]
    return []


def offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip, found = _docstrings(tree), []
    in_fstring = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "execute":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: calls execute(")
        if id(node) in skip or id(node) in in_fstring:
            continue
        for text in _texts(node):
            if SQL.search(text):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: SQL text {text[:60]!r}")
    return found


def test_the_checker_finds_sql_and_execute(tmp_path):
    sample = ROOT / "curate" / "_sample_for_the_test.py"
    sample.write_text('"""SELECT x FROM y in a docstring is prose."""\n'
                      'def f(con, t):\n    """Reads SELECT a FROM b."""\n'
                      '    con.execute(f"SELECT * FROM {t} WHERE k = 1")\n'
                      '    return "INSERT INTO t VALUES (1)", "select the rows you want"\n')
    try:
        assert [line.split(": ", 1)[1][:16] for line in offences(sample)] == [
            "calls execute(", "SQL text 'SELECT", "SQL text 'INSERT"]
    finally:
        sample.unlink()


def test_no_module_outside_the_lake_package_writes_sql():
    modules = [path for folder in ("curate", "flows") for path in sorted((ROOT / folder).rglob("*.py"))
               if "lake" not in path.relative_to(ROOT).parts[:2]]
    assert len(modules) > 50
    found = [line for path in modules for line in offences(path)]
    assert found == []
