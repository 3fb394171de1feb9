"""Programs that fake their tests instead of passing them (the reward hacking a code-preference set
must not teach). Each passes on the single-process harness curate used before (the control: the
tests ran in the candidate's own interpreter) and fails on today's, where the judge runs in a
process and uid of its own and sees only plain values; through the public path (imported
completions -> code_tests -> pairs -> audit -> export) none becomes a chosen answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import polars as pl
import pytest

from curate.config import parse_config
from curate.lake.catalog import open_lake
from curate.pipeline import Pipeline
from curate.sandbox import isolation as sandbox
from curate.sandbox.isolation import run_tests

CHECK = ("def check(candidate):\n"
         "    assert candidate(1, 2) == 3\n"
         "    assert candidate(-1, 5) == 4\n"
         "    assert candidate(10, 0) == 10\n")
ASSERTS = "assert add(1, 2) == 3\nassert add(-1, 5) == 4\nassert add(10, 0) == 10\n"
CLOSE = "assert abs(add(1, 2) - 3) < 1e-9\nassert abs(add(-1, 5) - 4) < 1e-9\n"
TYPED = "assert isinstance(add(1, 2), int) and add(1, 2) == 3\nassert add(-1, 5) == 4\n"
HONEST = "def add(a, b):\n    return a + b\n"
HONEST_WRONG = "def add(a, b):\n    return a - b\n"  # right on (10, 0) only

_ALWAYS_EQUAL = "class Yes:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
_REPORT_FROM_FRAME = (
    "import os, sys\n"
    "def add(a, b):\n"
    "    f = sys._getframe()\n"
    "    while f is not None:\n"
    "        if 'report' in f.f_locals and 'static' in f.f_locals:\n"
    "            f.f_locals['report']('passed', 3, 3, '')\n"
    "            {after}\n"
    "        f = f.f_back\n")
_REPORT_FROM_GC = (
    "import gc, os\n"
    "def add(a, b):\n"
    "    for o in gc.get_objects():\n"
    "        if getattr(o, '__name__', '') == 'report' and callable(o):\n"
    "            o('passed', 3, 3, '')\n"
    "            {after}\n")

# name -> (program, tests, entry point)
FAKERS = {
    "eq_always_true_check": (_ALWAYS_EQUAL + "def add(a, b):\n    return Yes()\n", CHECK, "add"),
    "eq_always_true_asserts": (_ALWAYS_EQUAL + "def add(a, b):\n    return Yes()\n", ASSERTS, None),
    "int_subclass_eq": ("class Yes(int):\n    def __eq__(self, other):\n        return True\n"
                        "    __hash__ = int.__hash__\n"
                        "def add(a, b):\n    return Yes(0)\n", CHECK, "add"),
    "eq_returns_truthy_object": ("class Truthy:\n    def __bool__(self):\n        return True\n"
                                 "class Odd:\n    def __eq__(self, other):\n        return Truthy()\n"
                                 "def add(a, b):\n    return Odd()\n", CHECK, "add"),
    "class_claims_int": ("class Fake:\n    __class__ = property(lambda self: int)\n"
                         "    def __eq__(self, other):\n        return True\n"
                         "def add(a, b):\n    return Fake()\n", TYPED, None),
    "fail_marker_swapped": ("def add(a, b):\n"
                            "    g = globals()\n"
                            "    for k in list(g):\n"
                            "        if k.startswith('_curate_') and k.endswith('_fail'):\n"
                            "            g[k] = g[k[:-5] + '_ok']\n"
                            "    return 0\n", CHECK, "add"),
    "compile_patched": ("import builtins\n_compile = builtins.compile\n"
                        "def _quiet(source, filename, *args, **kwargs):\n"
                        "    if filename == 'tests.py':\n"
                        "        source = 'pass'\n"
                        "    return _compile(source, filename, *args, **kwargs)\n"
                        "builtins.compile = _quiet\n" + HONEST_WRONG, ASSERTS, None),
    "ast_module_patched": ("import ast, sys\n_parse = ast.parse\n"
                           "sys.modules['ast'].parse = lambda source, *a, **k: _parse('pass')\n"
                           + HONEST_WRONG, ASSERTS, None),
    "abs_helper_patched": ("import builtins\nbuiltins.abs = lambda x: 0\n" + HONEST_WRONG, CLOSE, None),
    "report_from_frame_then_exit": (_REPORT_FROM_FRAME.format(after="os._exit(0)"), CHECK, "add"),
    "report_from_frame_no_exit": (_REPORT_FROM_FRAME.format(after="return 0"), CHECK, "add"),
    "report_from_gc_then_exit": (_REPORT_FROM_GC.format(after="os._exit(0)"), CHECK, "add"),
    "report_from_gc_no_exit": (_REPORT_FROM_GC.format(after="return 0"), CHECK, "add"),
    "report_written_first": ("import os, sys\n"
                             "def add(a, b):\n"
                             "    f = sys._getframe()\n"
                             "    while f is not None and 'marker' not in f.f_locals:\n"
                             "        f = f.f_back\n"
                             "    line = '\\n%spassed 3 3 \\n' % f.f_locals['marker']\n"
                             "    os.write(f.f_locals['fd'], line.encode())\n"
                             "    os._exit(0)\n", CHECK, "add"),
    "expected_read_from_tests": ("import ast, sys\n"
                                 "def add(a, b):\n"
                                 "    f = sys._getframe()\n"
                                 "    while 'tests' not in f.f_locals:\n"
                                 "        f = f.f_back\n"
                                 "    for node in ast.walk(ast.parse(f.f_locals['tests'])):\n"
                                 "        if (isinstance(node, ast.Compare) and isinstance(node.left, ast.Call)\n"
                                 "                and [ast.literal_eval(x) for x in node.left.args] == [a, b]):\n"
                                 "            return ast.literal_eval(node.comparators[0])\n", CHECK, "add"),
}
DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.usefixtures("sandbox_to_itself")


@pytest.fixture
def single_process_harness(monkeypatch):
    """The sandbox runs the old harness, the old way, until the test ends (or monkeypatch.undo)."""
    sandbox.isolation()  # its probe run, on today's harness, before the old one stands in
    real = sandbox._harness_files
    monkeypatch.setattr(sandbox, "_harness_files", lambda: {
        **real(), "launch/launcher.py": (DATA / "single_process_launcher.py").read_text(),
        "launch/single_process_harness.py": (DATA / "single_process_harness.py").read_text()})


@pytest.mark.parametrize("name", sorted(FAKERS))
def test_control_every_faker_passes_when_the_tests_share_its_interpreter(name, single_process_harness):
    program, tests, entry_point = FAKERS[name]
    result = run_tests(program, tests, entry_point)
    assert result.status == "passed", result
    assert run_tests(HONEST_WRONG, tests, entry_point).status == "failed"


@pytest.mark.parametrize("name", sorted(FAKERS))
def test_every_faker_fails_the_split_harness(name):
    program, tests, entry_point = FAKERS[name]
    result = run_tests(program, tests, entry_point)
    assert result.status in {"failed", "error"} and result.tests_passed < result.tests_total, result
    honest = run_tests(HONEST, tests, entry_point)
    assert (honest.status, honest.tests_passed) == ("passed", honest.tests_total), honest


FAKERS_OF_CHECK = {name: program for name, (program, tests, _) in FAKERS.items() if tests == CHECK}


def _pipeline(tmp_path) -> Pipeline:
    """One code prompt: the fakers rated 10 by the file, the honest answers 5 and 1; margin pairs
    on the verifier and on the rating."""
    rows = [{"prompt": "Write add(a, b) that returns the sum of a and b.", "task": "code",
             "tests": CHECK, "entry_point": "add", "completions": [
                 *({"text": f"```python\n{program}```", "model": name, "overall_score": 10}
                   for name, program in FAKERS_OF_CHECK.items()),
                 {"text": f"```python\n{HONEST}```", "model": "honest", "overall_score": 5},
                 {"text": f"```python\n{HONEST_WRONG}```", "model": "honest-wrong", "overall_score": 1}]}]
    path = tmp_path / "code.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    values = {"name": "fakers", "export_path": "export/fakers", "generators": [],
              "inputs": [{"path": str(path), "generate": False}],
              "scorers": [{"kind": "code_tests"}],
              "pairs": [{"strategy": "margin", "scorer": "code_tests", "min_margin": 0.1},
                        {"strategy": "margin", "scorer": "imported:overall_score"}],
              "dedup": {"semantic": False}}
    return Pipeline(parse_config(values, tmp_path), tmp_path / "data")


def _lake(lake) -> dict:
    tables = {name: lake.read(name) for name in ("candidates", "scores", "pairs", "pair_audits")}
    candidates = tables["candidates"]
    tables["model_of"] = dict(zip(candidates["candidate_id"].to_list(), candidates["model"].to_list(), strict=True))
    return tables


def _chosen_verdicts(tables: dict, check: str) -> dict[str, str]:
    """The chosen model of every pair -> its latest `check` verdict."""
    audits = tables["pair_audits"].filter(pl.col("check_name") == check).sort("created_at")
    verdict = dict(zip(audits["pair_id"].to_list(), audits["verdict"].to_list(), strict=True))
    return {tables["model_of"][c]: verdict.get(p) for p, c in
            zip(tables["pairs"]["pair_id"].to_list(), tables["pairs"]["chosen_id"].to_list(), strict=True)}


def test_fakers_never_become_chosen_answers_through_the_public_path(tmp_path):
    pipeline = _pipeline(tmp_path)
    try:
        pipeline.run_all()
        tables = _lake(pipeline.lake)
    finally:
        pipeline.close()
    model_of, scores = tables["model_of"], tables["scores"].filter(pl.col("scorer") == "code_tests")
    verdict = {model_of[c]: s for c, s in zip(scores["candidate_id"].to_list(), scores["score"].to_list(), strict=True)}
    assert {name: verdict[name] for name in FAKERS_OF_CHECK} == {name: 0.0 for name in FAKERS_OF_CHECK}
    assert verdict["honest"] == 1.0 and 0.0 < verdict["honest-wrong"] < 1.0
    chosen = _chosen_verdicts(tables, "answer_verifier")
    assert chosen.get("honest") == "confirmed" and not set(chosen) & set(FAKERS_OF_CHECK)
    exported = datasets.load_from_disk(str(tmp_path / "data" / "export" / "fakers"))["train"]
    assert {model_of[c] for c in exported["chosen_id"]} == {"honest"}


def test_a_lake_scored_by_the_old_harness_is_refuted_by_the_audit(tmp_path, monkeypatch, single_process_harness):
    """Control through the public path: under the old harness the fakers score 1.0, pair as chosen
    answers and the audit's verifier re-run confirms them. `curate audit` on the same lake, with
    today's harness, refutes every one of those pairs (the verifier re-run puts the chosen below
    its rejected) and no longer confirms their answers, and `curate export` leaves them out."""
    pipeline = _pipeline(tmp_path)
    try:
        pipeline.run_all()
        before = _chosen_verdicts(_lake(pipeline.lake), "answer_verifier")
    finally:
        pipeline.close()
    fooled = {name for name in before if name in FAKERS_OF_CHECK}
    assert fooled and all(before[name] == "confirmed" for name in fooled), before
    monkeypatch.undo()
    # this checkout's curate, wherever the venv's console script points
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(Path(__file__).parents[1])}
    curate = str(Path(sys.executable).with_name("curate"))
    data = str(tmp_path / "data")
    subprocess.run([curate, "audit", "--data-dir", data], check=True, env=env, capture_output=True)
    with open_lake(tmp_path / "data") as lake:
        tables = _lake(lake)
    claim, answer = _chosen_verdicts(tables, "verifier"), _chosen_verdicts(tables, "answer_verifier")
    assert {name: claim[name] for name in fooled} == {name: "refuted" for name in fooled}
    assert not {name for name in fooled if answer[name] == "confirmed"}
    subprocess.run([curate, "export", str(tmp_path / "out"), "--data-dir", data], check=True, env=env,
                   capture_output=True)
    exported = datasets.load_from_disk(str(tmp_path / "out"))["train"]
    assert not {tables["model_of"][c] for c in exported["chosen_id"]} & fooled
