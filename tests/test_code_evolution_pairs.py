"""Synthetic code evolution (CodeFavor): commits mined from a git repo, critique revisions."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from curate import ids
from curate.errors import UserError
from curate.lake import schemas
from curate.pairs import code_evolution
from curate.pairs.code_commits import comment_only, edit_region, formatting_only, meaningful_subject, mine_commits
from curate.pairs.derive import DerivedPrompt, derived_prompt_rows
from curate.pairs.registry import STRATEGIES, build_pairs, derive_prompts

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 7, 8, tzinfo=timezone.utc)
GIT_ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
           "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "T",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


# frames ----------------------------------------------------------------------------------------

def prompt_row(pid, task="code", content=None, fields=None, source="s", messages=None):
    return {"prompt_id": pid, "source": source, "task": task,
            "messages": messages or [{"role": "user", "content": content or f"question {pid}"}],
            "task_fields_json": json.dumps(fields, sort_keys=True) if fields is not None else None,
            "run_id": "r0", "created_at": NOW}


def prompts_frame(rows, derived=()):
    frames = [pl.from_arrow(schemas.conform("prompts", rows))]
    if derived:
        frames.append(pl.from_arrow(derived_prompt_rows(list(derived), "code_evolution", "r1")))
    return pl.concat(frames)


def candidates_frame(rows):
    """rows: (candidate_id, prompt_id, text)."""
    out = [{"candidate_id": cid, "prompt_id": pid, "model": "gen@fp", "sampling_json": "{}", "sample_index": i,
            "seed": i, "text": text, "run_id": "r0", "created_at": NOW} for i, (cid, pid, text) in enumerate(rows)]
    return pl.from_arrow(schemas.conform("candidates", out))


def scores_frame(rows):
    """rows: (candidate_id, prompt_id, passed, total, duration_s[, status[, created_at]])."""
    out = []
    for row in rows:
        cid, pid, passed, total, duration, status, created = (*row, *("ok", NOW)[len(row) - 5:])
        detail = {"status": "passed" if passed == total else "failed", "tests_passed": passed,
                  "tests_total": total, "reason": "", "duration_s": duration}
        out.append({"score_id": ids.score_id(cid, "code_tests", str(created)), "candidate_id": cid,
                    "prompt_id": pid, "scorer": "code_tests", "scorer_version": "1",
                    "score": passed / total if status == "ok" else None, "status": status,
                    "detail_json": json.dumps(detail), "run_id": "r0", "created_at": created})
    return pl.from_arrow(schemas.conform("scores", out))


EMPTY_CANDIDATES = candidates_frame([])
EMPTY_SCORES = scores_frame([])


def build(prompts, candidates=EMPTY_CANDIDATES, scores=EMPTY_SCORES, config=None):
    return build_pairs("code_evolution", prompts, candidates, scores, config or {}, run_id="run-x")


# a git repository with one commit of each kind --------------------------------------------------

def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo, message, files):
    for name, text in files.items():
        path = repo / name
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-gpg-sign", "-m", message)
    return git(repo, "rev-parse", "HEAD")


A0 = '''"""Parsing helpers."""


def parse(text):
    # split on commas
    return [part.strip() for part in text.split(",")]


def total(values):
    return sum(values)
'''
A1 = A0.replace('def parse(text):\n', 'def parse(text):\n    if not text:\n        return []\n')
A_SPACES = A1.replace("sum(values)", "sum( values )")
A_COMMENT = A_SPACES.replace("# split on commas", "# split the text on every comma")
A_HUGE = A_COMMENT + "".join(f"\n\ndef helper_{i}():\n    return {i}\n" for i in range(20))
A_FIX = A_HUGE.replace("return 0\n", "return -1\n")
A_WIP = A_FIX.replace("return 1\n", "return -2\n")
A2 = A_WIP.replace("sum( values )", "sum(values, 0.0)")
A_SIDE = A2.replace("return 2\n", "return 22\n")
B0 = "def helper():\n    return 1\n"
U0 = "NAMES = ['a', 'b']\n\n\ndef names():\n    return NAMES\n"
U1 = U0.replace("return NAMES", "return sorted(NAMES)")
BIG = "".join(f"VALUE_{i} = {i}\n" for i in range(450))


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    repo = tmp_path_factory.mktemp("history")
    git(repo, "init", "-q", "-b", "main")
    shas = {}
    commit(repo, "Initial import of the parser", {"a.py": A0, "b.py": B0, "README.md": "# parser\n",
                                                   "big.py": BIG, "pkg/ünï code.py": U0})
    shas["good1"] = commit(repo, "Handle empty input in parse", {"a.py": A1})
    commit(repo, "Rename the helper in both modules", {"a.py": A1 + "\n", "b.py": B0.replace("1", "2")})
    commit(repo, "Tidy up the spacing in total", {"a.py": A_SPACES})
    commit(repo, "Clarify the comment in parse", {"a.py": A_COMMENT})
    commit(repo, "Add many generated helper functions", {"a.py": A_HUGE})
    commit(repo, "fix", {"a.py": A_FIX})
    commit(repo, "Add a module for formatting output", {"c.py": "def fmt(x):\n    return str(x)\n"})
    commit(repo, "Document the parse function usage", {"README.md": "# parser\n\nCall parse(text).\n"})
    commit(repo, "Fix the constant in the big table", {"big.py": BIG.replace("VALUE_7 = 7", "VALUE_7 = 8")})
    commit(repo, "WIP: try another approach here", {"a.py": A_WIP})
    commit(repo, "Remove the unused helper module", {"b.py": None})
    shas["unicode"] = commit(repo, "Sort the names before returning them", {"pkg/ünï code.py": U1})
    shas["good2"] = commit(repo, "Return a float from total", {"a.py": A2})
    git(repo, "checkout", "-q", "-b", "side")
    commit(repo, "Return another value from helper two", {"a.py": A_SIDE})
    git(repo, "checkout", "-q", "main")
    commit(repo, "Mention the side branch in the readme", {"README.md": "# parser\n\nSee side.\n"})
    git(repo, "merge", "-q", "--no-ff", "--no-gpg-sign", "-m", "Merge branch 'side'", "side")
    return repo, shas


def test_mining_keeps_only_small_single_file_code_commits_with_a_message(history):
    repo, shas = history
    mined = mine_commits(repo)
    assert [(c["sha"], c["path"]) for c in mined] == [
        (shas["good2"], "a.py"), (shas["unicode"], "pkg/ünï code.py"), (shas["good1"], "a.py")]
    good2, unicode, good1 = mined
    assert (good1["before"], good1["after"], good1["message"], good1["diff_lines"]) == (
        A0, A1, "Handle empty input in parse", 2)
    assert (good2["before"], good2["after"], good2["message"], good2["diff_lines"]) == (
        A_WIP, A2, "Return a float from total", 2)
    assert (unicode["before"], unicode["after"]) == (U0, U1)
    assert set(good1) == {"sha", "path", "message", "diff_lines", "before", "after"}
    assert [c["sha"] for c in mine_commits(repo, max_commits=1)] == [shas["good2"]]
    assert mine_commits(str(repo)) == mined  # a str path works the same


def test_mining_reads_the_repo_it_is_given_whatever_git_env_says(history, tmp_path, monkeypatch):
    repo, shas = history
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere.git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(tmp_path))
    assert [c["sha"] for c in mine_commits(repo, max_commits=1)] == [shas["good2"]]


def test_each_filter_is_the_reason_its_commit_was_dropped(history):
    repo, _ = history
    messages = lambda **kw: [c["message"] for c in mine_commits(repo, max_commits=50, **kw)]  # noqa: E731
    base = ["Return a float from total", "Sort the names before returning them", "Handle empty input in parse"]
    assert messages() == base
    assert "Add many generated helper functions" in messages(max_diff_lines=100)
    assert "fix" in messages(min_message_words=1)
    assert "Fix the constant in the big table" in messages(max_file_lines=1000)
    assert messages(paths="*.md") == ["Mention the side branch in the readme", "Document the parse function usage"]
    assert messages(paths=["pkg/*"]) == ["Sort the names before returning them"]
    # never: two files, formatting-only, comment-only, an add, a delete, WIP, the merge or its side branch
    loose = messages(max_diff_lines=1000, max_file_lines=10_000, min_message_words=0, paths="*")
    for dropped in ("Rename the helper in both modules", "Tidy up the spacing in total",
                    "Clarify the comment in parse", "Add a module for formatting output",
                    "Remove the unused helper module", "Initial import of the parser",
                    "WIP: try another approach here", "Merge branch 'side'", "Return another value from helper two"):
        assert dropped not in loose
    assert "fix" in loose and "Document the parse function usage" in loose


def test_message_format_and_comment_rules():
    assert meaningful_subject("Handle empty input in parse", 3)
    assert not meaningful_subject("fix", 3) and not meaningful_subject("fix the bug", 4)
    for subject in ("fixup! Handle empty input", "squash! Handle empty input", "WIP: handle empty input",
                    "[wip] handle empty input", "Revert \"Handle empty input\"",
                    "Merge branch 'main' into dev", "Merge pull request #3 from x/y"):
        assert not meaningful_subject(subject, 3), subject
    assert meaningful_subject("Merge adjacent ranges in the parser", 3)
    assert formatting_only("x = f(a,b)\n", "x = f(a, b)\n\n")
    assert not formatting_only("x = a + b\n", "x = a - b\n")
    # trailing and full-line comments, blank lines and spacing are not code; strings and indents are
    assert comment_only("x = 1  # one\n", "# set x\nx  =  1  # the first\n\n")
    assert not comment_only("s = '# a'\n", "s = '# b'\n")
    assert not comment_only("if a:\n    b()\nc()\n", "if a:\n    b()\n    c()\n")
    assert not comment_only('def f():\n    """Doc."""\n', 'def f():\n    """Docs."""\n')
    # not Python (or not tokenizable): full-line comments and blank lines only
    assert comment_only("// a\nint x;\n", "// b\n\nint x;\n", "x.c")
    assert comment_only("x = (\n# a\n", "x = (\n# b\n")  # does not tokenize: the regex decides
    assert not comment_only("x = (\n1\n", "x = (\n2\n")


def test_mining_an_empty_repo_or_a_non_repo(tmp_path):
    empty, plain = tmp_path / "empty", tmp_path / "plain"
    empty.mkdir()
    plain.mkdir()
    git(empty, "init", "-q")
    assert mine_commits(empty) == []
    with pytest.raises(UserError, match="plain"):
        mine_commits(plain)
    with pytest.raises(UserError, match="plain"):
        derive_prompts("code_evolution", prompts_frame([]), EMPTY_CANDIDATES, EMPTY_SCORES,
                              {"mode": "commits", "repo": str(plain)})


# commits: derive and build --------------------------------------------------------------------

def instruction(path, message, before):
    return (f"Apply this change to `{path}`: {message}\n\nHere is the current file:\n"
            f"```python\n{before}\n```\nReply with the complete updated file.")


def region_instruction(path, message, before_region, first, last):
    return (f"Apply this change to `{path}`: {message}\n\nHere are lines {first}-{last} of the current file:\n"
            f"```python\n{before_region}\n```\nReply with the updated lines only.")


def test_derive_commits_exactly(history):
    """scope = "file": the whole files, as before scopes existed (the same prompts and ids)."""
    repo, shas = history
    config = {"mode": "commits", "repo": str(repo), "max_commits": 2, "scope": "file"}
    derived = derive_prompts("code_evolution", prompts_frame([]), EMPTY_CANDIDATES, EMPTY_SCORES, config)
    assert derived == [
        DerivedPrompt(parent_prompt_id=None, task="code_edit",
                      messages=[{"role": "user", "content": instruction("a.py", "Return a float from total", A_WIP)}],
                      fields={"before": A_WIP, "after": A2, "message": "Return a float from total"},
                      generation={"n": 0}, note={"commit": shas["good2"], "path": "a.py", "diff_lines": 2}),
        DerivedPrompt(parent_prompt_id=None, task="code_edit",
                      messages=[{"role": "user", "content": instruction(
                          "pkg/ünï code.py", "Sort the names before returning them", U0)}],
                      fields={"before": U0, "after": U1, "message": "Sort the names before returning them"},
                      generation={"n": 0}, note={"commit": shas["unicode"], "path": "pkg/ünï code.py",
                                                 "diff_lines": 2}),
    ]
    again = derive_prompts("code_evolution", prompts_frame([]), EMPTY_CANDIDATES, EMPTY_SCORES, config)
    assert again == derived
    assert (derived_prompt_rows(again, "code_evolution", "r2")["prompt_id"].to_pylist()
            == derived_prompt_rows(derived, "code_evolution", "r1")["prompt_id"].to_pylist())


def test_derive_commits_regions_exactly(history):
    """scope = "region" (the default): the changed lines with context_lines lines around them."""
    repo, shas = history
    config = {"mode": "commits", "repo": str(repo), "max_commits": 2, "context_lines": 3}
    derived = derive_prompts("code_evolution", prompts_frame([]), EMPTY_CANDIDATES, EMPTY_SCORES, config)
    # good2: `return sum( values )` -> `return sum(values, 0.0)`, one line; 3 lines either side
    lines, new_lines = A_WIP.split("\n"), A2.split("\n")
    changed = lines.index("    return sum( values )")
    assert new_lines[changed] == "    return sum(values, 0.0)"
    before, after = "\n".join(lines[changed - 3:changed + 4]), "\n".join(new_lines[changed - 3:changed + 4])
    span = [changed - 2, changed + 4]  # 1-based, inclusive
    # unicode: U0 has 5 lines, the change is its last: clamped at the end, 3 lines above it
    assert derived == [
        DerivedPrompt(parent_prompt_id=None, task="code_edit",
                      messages=[{"role": "user", "content": region_instruction(
                          "a.py", "Return a float from total", before, *span)}],
                      fields={"before": before, "after": after, "message": "Return a float from total"},
                      generation={"n": 0}, note={"commit": shas["good2"], "path": "a.py", "diff_lines": 2,
                                                 "scope": "region", "before_lines": span, "after_lines": span}),
        DerivedPrompt(parent_prompt_id=None, task="code_edit",
                      messages=[{"role": "user", "content": region_instruction(
                          "pkg/ünï code.py", "Sort the names before returning them",
                          "\n".join(U0.split("\n")[1:5]), 2, 5)}],
                      fields={"before": "\n".join(U0.split("\n")[1:5]), "after": "\n".join(U1.split("\n")[1:5]),
                              "message": "Sort the names before returning them"},
                      generation={"n": 0}, note={"commit": shas["unicode"], "path": "pkg/ünï code.py",
                                                 "diff_lines": 2, "scope": "region", "before_lines": [2, 5],
                                                 "after_lines": [2, 5]}),
    ]
    whole = derive_prompts("code_evolution", prompts_frame([]), EMPTY_CANDIDATES, EMPTY_SCORES,
                           {**config, "context_lines": 0, "max_commits": 1})[0]
    assert whole.fields["before"] == "    return sum( values )" and whole.note["before_lines"] == [changed + 1] * 2
    assert "Here is line" in whole.messages[0]["content"]


def test_build_commit_pairs_for_mined_and_supplied_code_edit_prompts(history):
    repo, shas = history
    config = {"mode": "commits", "repo": str(repo), "max_commits": 1, "scope": "file"}
    derived = derive_prompts("code_evolution", prompts_frame([]), EMPTY_CANDIDATES, EMPTY_SCORES, config)
    supplied = {"before": "x = 1\n", "after": "x = 2\ny = 3\n", "message": "Set x to two"}
    prompts = prompts_frame([
        prompt_row("p-edit", task="code_edit", content="Set x to two in this file", fields=supplied, source="edits"),
        prompt_row("p-same", task="code_edit", fields={"before": "x\n", "after": "x\n", "message": "no change here"}),
        prompt_row("p-chat", task="chat"),
    ], derived)
    mined_id = [p for p in prompts["prompt_id"] if p not in ("p-edit", "p-same", "p-chat")][0]
    candidates = candidates_frame([("c1", "p-edit", "a model's edit"), ("c2", mined_id, "another")])
    pairs = build(prompts, candidates, config=config)
    schemas.conform("pairs", pairs.to_arrow())
    rows = {r["prompt_id"]: r for r in pairs.to_dicts()}
    assert set(rows) == {mined_id, "p-edit"}
    mined = rows[mined_id]
    sha = shas["good2"]
    assert mined["prompt"] == [{"role": "user", "content": instruction("a.py", "Return a float from total", A_WIP)}]
    assert (mined["chosen"], mined["rejected"]) == (f"```python\n{A2}\n```", f"```python\n{A_WIP}\n```")
    assert (mined["chosen_id"], mined["rejected_id"]) == (f"commit:{sha}:after", f"commit:{sha}:before")
    assert (mined["scorer"], mined["chosen_score"], mined["rejected_score"], mined["margin"]) == (None,) * 4
    assert json.loads(mined["details_json"]) == {"commit": sha, "path": "a.py", "diff_lines": 2,
                                                 "property": "instruction", "scope": "file"}
    assert sha[:12] in mined["reason"] and "Return a float from total" in mined["reason"]
    assert mined["strategy"] == "code_evolution"
    assert mined["pair_id"] == ids.pair_id("code_evolution", f"commit:{sha}:after", f"commit:{sha}:before", mined_id)
    assert json.loads(mined["params_json"]) == {"mode": "commits", "repo": str(repo), "max_commits": 1,
                                                "max_diff_lines": 40, "max_file_lines": 400, "max_region_lines": 60,
                                                "min_message_words": 3, "paths": "*.py", "scope": "file",
                                                "context_lines": 8}
    edit = rows["p-edit"]
    assert edit["prompt"] == [{"role": "user", "content": "Set x to two in this file"}]
    assert (edit["chosen"], edit["rejected"]) == ("```python\nx = 2\ny = 3\n\n```", "```python\nx = 1\n\n```")
    assert (edit["chosen_id"], edit["rejected_id"]) == ("code_edit:p-edit:after", "code_edit:p-edit:before")
    assert json.loads(edit["details_json"]) == {"commit": None, "path": None, "diff_lines": 3,
                                                "property": "instruction"}
    assert "Set x to two" in edit["reason"]
    # critiques mode pairs no code_edit prompt
    assert build(prompts, candidates, config={"mode": "critiques"}).height == 0
    # a supplied code_edit prompt pairs its texts whole under scope "region" as well
    same = ("pair_id", "prompt", "chosen", "rejected", "chosen_id", "rejected_id", "reason", "details_json")
    region = build(prompts, candidates, config={"mode": "commits", "repo": str(repo), "max_commits": 1})
    assert region.filter(pl.col("prompt_id") == "p-edit").select(same).to_dicts() == [
        {key: edit[key] for key in same}]


# commits: region pairs on real text -------------------------------------------------------------

KINDS = ["widgets", "gadgets", "sprockets", "bolts", "washers", "brackets", "hinges", "springs",
         "gears", "pulleys", "valves", "gaskets", "fittings", "clamps"]


def inventory_module() -> str:
    """A 200-line module as people write them: a docstring, imports, a dataclass and one loader per
    kind of part (repeated lines included: `items = []`, `continue`, `return items`)."""
    lines = ['"""Inventory helpers: read stock files, price orders and report shortages."""', "",
             "from __future__ import annotations", "", "import csv", "import logging",
             "from dataclasses import dataclass, field", "from pathlib import Path", "",
             "LOG = logging.getLogger(__name__)", "", "", "@dataclass", "class Item:", "    sku: str",
             "    name: str", "    price: float", "    stock: int = 0",
             "    tags: list[str] = field(default_factory=list)"]
    for kind in KINDS:
        lines += ["", "", f"def load_{kind}(path: Path) -> list[Item]:",
                  f'    """Read the {kind} file at `path` (CSV: sku, name, price, stock)."""',
                  "    items = []",
                  '    with open(path, newline="", encoding="utf-8") as handle:',
                  "        for row in csv.DictReader(handle):",
                  f'            if row.get("kind", "{kind}") != "{kind}":',
                  "                continue",
                  '            items.append(Item(row["sku"], row["name"], float(row["price"]), int(row["stock"])))',
                  f'    LOG.info("%d {kind} read from %s", len(items), path)',
                  "    return items"]
    lines += ["", "", "def shortages(items: list[Item], minimum: int = 5) -> dict[str, int]:",
              '    """How many of each item are missing to reach `minimum` in stock."""',
              "    missing = {}", "    for item in items:", "        if item.stock < minimum:",
              '            LOG.debug("%s is short", item.sku)', "            missing[item.sku] = minimum - item.stock",
              "    return missing"]
    lines += ["", "", "__all__ = [\"Item\", \"shortages\"] + [name for name in dir() if name.startswith(\"load_\")]"]
    assert len(lines) == 200
    return "\n".join(lines) + "\n"


OLD_ROWS = ['            if row.get("kind", "gears") != "gears":',
            "                continue",
            '            items.append(Item(row["sku"], row["name"], float(row["price"]), int(row["stock"])))']
NEW_ROWS = ['            if row.get("kind", "gears") != "gears" or not row["sku"].strip():',
            "                continue  # a row of another kind, or a blank sku",
            '            items.append(Item(row["sku"].strip(), row["name"], float(row["price"]), int(row["stock"])))']


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    """A repository whose last commit changes 3 lines in the middle of a 200-line file."""
    repo = tmp_path_factory.mktemp("inventory")
    git(repo, "init", "-q", "-b", "main")
    before = inventory_module()
    after = before.replace("\n".join(OLD_ROWS), "\n".join(NEW_ROWS))
    assert after != before and before.count("\n".join(OLD_ROWS)) == 1
    commit(repo, "Add the inventory loaders", {"inventory.py": before})
    sha = commit(repo, "Skip gear rows with a blank sku", {"inventory.py": after})
    return repo, sha, before, after


def commit_pair(repo, **config):
    config = {"mode": "commits", "repo": str(repo), **config}
    derived = derive_prompts("code_evolution", prompts_frame([]), EMPTY_CANDIDATES, EMPTY_SCORES, config)
    pairs = build(prompts_frame([], derived), config=config)
    assert pairs.height == len(derived) == 1
    return pairs.to_dicts()[0]


def test_region_pair_holds_the_changed_lines_of_a_real_file(inventory):
    repo, sha, before, after = inventory
    k = 8
    pair = commit_pair(repo)  # scope "region", context_lines 8 by default
    prompt = pair["prompt"][0]["content"]
    chosen, rejected = pair["chosen"], pair["rejected"]
    assert chosen != rejected
    chosen_lines, rejected_lines = chosen.split("\n"), rejected.split("\n")
    assert all(line in rejected_lines for line in OLD_ROWS) and all(line in chosen_lines for line in NEW_ROWS)
    assert not set(OLD_ROWS) & set(chosen_lines) and not set(NEW_ROWS) & set(rejected_lines)
    # the changed lines, k lines around them and the two fence lines: nothing more
    assert len(chosen.split("\n")) == len(rejected.split("\n")) == 2 * k + len(OLD_ROWS) + 2
    assert len(chosen) < len(after) / 5 and len(rejected) < len(before) / 5
    first = before.split("\n").index(OLD_ROWS[0]) + 1 - k
    span = [first, first + 2 * k + len(OLD_ROWS) - 1]
    region = "\n".join(before.split("\n")[span[0] - 1:span[1]])
    assert rejected == f"```python\n{region}\n```"
    assert chosen == f"```python\n{chr(10).join(after.split(chr(10))[span[0] - 1:span[1]])}\n```"
    # the prompt quotes the region, not the whole file
    assert prompt == region_instruction("inventory.py", "Skip gear rows with a blank sku", region, *span)
    assert f"Here are lines {span[0]}-{span[1]} of the current file" in prompt
    assert before not in prompt and "def load_widgets" not in prompt and "__all__" not in prompt
    assert len(prompt) < len(before) / 4
    details = json.loads(pair["details_json"])
    assert details == {"commit": sha, "path": "inventory.py", "diff_lines": 6, "property": "instruction",
                       "scope": "region", "before_lines": span, "after_lines": span}
    assert f"lines {span[0]}-{span[1]} after the change" in pair["reason"]
    assert (pair["chosen_id"], pair["rejected_id"]) == (f"commit:{sha}:after", f"commit:{sha}:before")
    assert json.loads(pair["params_json"])["scope"] == "region"
    # context_lines = 0: the three lines themselves
    bare = commit_pair(repo, context_lines=0)
    assert (bare["chosen"], bare["rejected"]) == (
        "```python\n" + "\n".join(NEW_ROWS) + "\n```", "```python\n" + "\n".join(OLD_ROWS) + "\n```")
    # a context wider than the file is clamped to it: the whole file, lines 1-200
    wide = commit_pair(repo, context_lines=1000)
    assert wide["rejected"] == f"```python\n{before.rstrip(chr(10))}\n```"
    assert json.loads(wide["details_json"])["before_lines"] == [1, 200]


def test_scope_file_gives_the_whole_file_pair(inventory):
    repo, sha, before, after = inventory
    pair = commit_pair(repo, scope="file")
    assert pair["prompt"] == [{"role": "user", "content": instruction(
        "inventory.py", "Skip gear rows with a blank sku", before)}]
    assert (pair["chosen"], pair["rejected"]) == (f"```python\n{after}\n```", f"```python\n{before}\n```")
    assert json.loads(pair["details_json"]) == {"commit": sha, "path": "inventory.py", "diff_lines": 6,
                                                "property": "instruction", "scope": "file"}
    assert "the file after the change over before it" in pair["reason"]
    assert pair["chosen_id"] == commit_pair(repo)["chosen_id"]  # the same sides, another prompt
    assert pair["prompt_id"] != commit_pair(repo)["prompt_id"]


def test_edit_region_spans_every_hunk_and_anchors_insertions():
    before = "".join(f"line_{i} = {i}\n" for i in range(1, 41))
    two_hunks = before.replace("line_5 = 5", "line_5 = 50").replace("line_30 = 30", "line_30 = 300")
    region = edit_region(before, two_hunks, 2)
    assert (region["before_lines"], region["after_lines"]) == ([3, 32], [3, 32])  # one span: 5..30, 2 around
    assert region["before"].split("\n")[0] == "line_3 = 3" and region["after"].split("\n")[-1] == "line_32 = 32"
    # clamped at both ends of the file
    assert edit_region(before, before.replace("line_1 = 1\n", "line_1 = -1\n"), 8)["before_lines"] == [1, 9]
    assert edit_region(before, before.replace("line_40 = 40\n", "line_40 = 4\n"), 8)["after_lines"] == [32, 40]
    # a pure insertion: with context the same lines lead in and out; with none, one line each side
    inserted = before.replace("line_20 = 20\n", "line_20 = 20\nextra = True\n")
    assert edit_region(before, inserted, 1) == {
        "before": "line_20 = 20\nline_21 = 21", "after": "line_20 = 20\nextra = True\nline_21 = 21",
        "before_lines": [20, 21], "after_lines": [20, 22]}
    assert edit_region(before, inserted, 0) == edit_region(before, inserted, 1)
    deleted = before.replace("line_20 = 20\n", "")
    assert edit_region(before, deleted, 0) == {
        "before": "line_19 = 19\nline_20 = 20\nline_21 = 21", "after": "line_19 = 19\nline_21 = 21",
        "before_lines": [19, 21], "after_lines": [19, 20]}
    # lines split on "\n" only, as git counts them; no line differs: no region
    assert edit_region("a = 1\f\nb = 2\n", "a = 1\f\nb = 3\n", 0)["before_lines"] == [2, 2]
    assert edit_region("x = 1", "x = 1\n", 8) is None


def test_a_commit_whose_hunks_lie_far_apart_is_not_mined_in_region_scope(tmp_path):
    """Two hunks 25 lines apart make one region of most of the file (as a bench script whose
    docstring and last lines changed): past max_region_lines it is no region pair, and not mined."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    before = "".join(f"line_{i} = {i}\n" for i in range(1, 41))
    commit(repo, "start the counting module", {"count.py": before})
    changed = before.replace("line_5 = 5\n", "line_5 = 50\n").replace("line_30 = 30", "line_30 = 300")
    far = commit(repo, "change two far lines", {"count.py": changed})
    near = commit(repo, "change one line again", {"count.py": changed.replace("line_30 = 300", "line_30 = 3")})
    assert [c["sha"] for c in mine_commits(repo)] == [near, far]
    assert [c["sha"] for c in mine_commits(repo, max_region_lines=20)] == [near]  # far's change: 26 lines
    derived = derive_prompts("code_evolution", prompts_frame([]), EMPTY_CANDIDATES, EMPTY_SCORES,
                             {"mode": "commits", "repo": str(repo), "max_region_lines": 20})
    assert [d.note["commit"] for d in derived] == [near]
    whole = derive_prompts("code_evolution", prompts_frame([]), EMPTY_CANDIDATES, EMPTY_SCORES,
                           {"mode": "commits", "repo": str(repo), "scope": "file", "max_region_lines": 20})
    assert [d.note["commit"] for d in whole] == [near, far]  # a whole-file pair is no region


def test_region_pairs_of_this_repositorys_own_history():
    """Real commits (as the demo mines them): a region is the changed span with k unchanged lines
    around it (fewer at the ends of the file), and nothing outside it changed."""
    try:
        mined = mine_commits(ROOT, max_commits=5, max_region_lines=60)  # scope "region"'s default
    except UserError:
        mined = []
    if not mined:
        pytest.skip("no git history with small commits here (an export without .git?)")
    k = 8
    lines = lambda text: text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")  # noqa: E731
    derived = derive_prompts("code_evolution", prompts_frame([]), EMPTY_CANDIDATES, EMPTY_SCORES,
                             {"mode": "commits", "repo": str(ROOT), "max_commits": 5})
    assert [d.note["commit"] for d in derived] == [c["sha"] for c in mined]
    for prompt, c in zip(derived, mined):
        old_file, new_file = lines(c["before"]), lines(c["after"])
        old, new = prompt.fields["before"].split("\n"), prompt.fields["after"].split("\n")
        (a, b), (c_, d) = prompt.note["before_lines"], prompt.note["after_lines"]
        assert prompt.note["scope"] == "region" and a == c_
        assert old_file[a - 1:b] == old and new_file[a - 1:d] == new and old != new
        assert old_file[:a - 1] == new_file[:a - 1] and old_file[b:] == new_file[d:]  # unchanged outside
        assert old[:k] == new[:k] if a > 1 else True  # k lines of context lead in ...
        assert old[-k:] == new[-k:] if b < len(old_file) else True  # ... and out
        content = prompt.messages[0]["content"]
        assert f"```python\n{prompt.fields['before']}\n```" in content
        assert len(content) < len(instruction(c["path"], c["message"], c["before"]))
        if len(old) < len(old_file):
            assert c["before"] not in content


# critiques ------------------------------------------------------------------------------------

TESTS = "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(-1, 1) == 0\nassert add(2, 2) == 4\n"
CODE_FIELDS = {"tests": TESTS, "entry_point": "add"}
REQUEST = "Write add(a, b)."


def fence(code):
    return f"Here you go:\n```python\n{code}\n```\nDone."


def code_set():
    prompts = [prompt_row("p1", content=REQUEST, fields=CODE_FIELDS),
               prompt_row("p2", fields={"tests": TESTS}, messages=[
                   {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Write add."}]),
               prompt_row("p3", fields={"tests": TESTS}),  # no scored candidates
               prompt_row("p-chat", task="chat")]
    candidates = [("c-half", "p1", fence("def add(a, b):\n    return a + b if a > 0 else 0\n")),
                  ("c-zero", "p1", fence("def add(a, b):\n    return a - b\n")),
                  ("c-zero2", "p1", fence("def add(a, b):\n    return None\n")),
                  ("c-fast", "p1", fence("def add(a, b):\n    return a + b\n")),
                  ("c-slow", "p1", fence("def add(a, b):\n    return sum([a, b])\n")),
                  ("c-err", "p1", fence("def add(a, b):\n    return 0\n")),
                  ("d-bad", "p2", "def add(a, b):\n    return 1\n"),
                  ("x-chat", "p-chat", "hello")]
    scores = [("c-half", "p1", 2, 4, 0.1), ("c-zero", "p1", 0, 4, 0.1), ("c-zero2", "p1", 0, 4, 0.1),
              ("c-fast", "p1", 4, 4, 0.2), ("c-slow", "p1", 4, 4, 0.5), ("c-err", "p1", 0, 4, 0.1, "error"),
              ("d-bad", "p2", 1, 4, 0.1)]
    return prompts_frame(prompts), candidates, scores


def critique(request, code):
    return (f"{request}\n\nHere is a proposed solution:\n```python\n{code}\n```\n"
            "Critique this solution: list its bugs and inefficiencies. Then write a corrected, complete "
            "solution in a single ```python block.")


def test_derive_critiques_for_failing_candidates_lowest_first():
    prompts, candidates, scores = code_set()
    derived = derive_prompts("code_evolution", prompts, candidates_frame(candidates), scores_frame(scores), {})
    # the critique quotes extract_code(text) as it is: the block's own final newline, then the fence's
    assert derived == [
        DerivedPrompt(parent_prompt_id="p1", task="code",
                      messages=[{"role": "user", "content": critique(REQUEST, "def add(a, b):\n    return a - b\n\n")}],
                      fields=CODE_FIELDS, generation={"n": 1, "max_tokens": 512}, note={"candidate_id": "c-zero"}),
        DerivedPrompt(parent_prompt_id="p2", task="code",
                      messages=[{"role": "system", "content": "Be terse."},
                                {"role": "user", "content": critique("Write add.", "def add(a, b):\n    return 1\n")}],
                      fields={"tests": TESTS}, generation={"n": 1, "max_tokens": 512}, note={"candidate_id": "d-bad"}),
    ]
    config = {"mode": "critiques", "max_candidates_per_prompt": 3, "revisions": 4, "max_tokens": 300}
    more = derive_prompts("code_evolution", prompts, candidates_frame(candidates), scores_frame(scores), config)
    # passing candidates are never critiqued (efficiency pairs, retired: they tie on code_tests)
    assert [(d.parent_prompt_id, d.note["candidate_id"]) for d in more] == [
        ("p1", "c-zero"), ("p1", "c-zero2"), ("p1", "c-half"), ("p2", "d-bad")]
    assert {json.dumps(d.generation) for d in more} == {json.dumps({"n": 4, "max_tokens": 300})}
    # derived prompts (and their revisions) are never critiqued again: the same prompts come back
    rows = prompts_frame(prompts.to_dicts(), more)
    revision = [(f"r{i}", pid, fence("def add(a, b):\n    return 0\n")) for i, pid in enumerate(rows["prompt_id"][4:])]
    again = derive_prompts("code_evolution", rows, candidates_frame(candidates + revision),
                                  scores_frame(scores + [(r[0], r[1], 0, 4, 0.1) for r in revision]), config)
    assert again == more


def critique_run(revisions, config=None):
    """The code set with every kind of critique derived and `revisions` as the critique prompts'
    candidates: rows (candidate_id, critiqued candidate id, code, score row tail or None)."""
    prompts, candidates, scores = code_set()
    config = {"mode": "critiques", "max_candidates_per_prompt": 3, **(config or {})}
    derived = derive_prompts("code_evolution", prompts, candidates_frame(candidates), scores_frame(scores), config)
    prompts = prompts_frame(prompts.to_dicts(), derived)
    critique_of = {d.note["candidate_id"]: pid for d, pid in
                   zip(derived, derived_prompt_rows(derived, "code_evolution", "r1")["prompt_id"].to_pylist())}
    for cid, original, code, score in revisions:
        candidates.append((cid, critique_of[original], fence(code)))
        if score is not None:
            scores.append((cid, critique_of[original], *score))
    later = NOW + timedelta(hours=1)
    return (prompts, candidates_frame(candidates), scores_frame(scores), config, critique_of,
            later)


def test_critique_pairs_for_correctness():
    # Changed with the pairing rule: efficiency pairs (4/4 vs 4/4, faster) are a tie on code_tests
    # and no longer form; their options are errors (test_registered_and_empty_frames_validate_config).
    revisions = [
        ("r-fixed", "c-zero", "def add(a, b):\n    return a + b\n", (4, 4, 0.3)),
        ("r-partly", "c-half", "def add(a, b):\n    return a + b if a >= 0 else b\n", (3, 4, 0.1)),
        ("r-same-score", "c-zero2", "def add(a, b):\n    return b\n", (0, 4, 0.1)),
        ("r-unscored", "c-half", "def add(a, b):\n    return a + b\n", None),
        ("r-identical", "c-zero2", "\ndef add(a, b):\n    return None\n\n", (4, 4, 0.01)),
    ]
    prompts, candidates, scores, config, critique_of, _ = critique_run(revisions)
    pairs = build(prompts, candidates, scores, config)
    schemas.conform("pairs", pairs.to_arrow())
    rows = {r["chosen_id"]: r for r in pairs.to_dicts()}
    assert set(rows) == {"r-fixed", "r-partly"}
    fixed = rows["r-fixed"]
    assert (fixed["prompt_id"], fixed["rejected_id"]) == ("p1", "c-zero")
    assert fixed["prompt"] == [{"role": "user", "content": REQUEST}]
    assert fixed["chosen"] == "```python\ndef add(a, b):\n    return a + b\n```"
    assert fixed["rejected"] == "```python\ndef add(a, b):\n    return a - b\n```"
    assert (fixed["scorer"], fixed["chosen_score"], fixed["rejected_score"], fixed["margin"]) == (
        "code_tests", 1.0, 0.0, 1.0)
    assert json.loads(fixed["details_json"]) == {
        "property": "correctness", "chosen_tests_passed": 4, "chosen_tests_total": 4, "rejected_tests_passed": 0,
        "rejected_tests_total": 4, "chosen_duration_s": 0.3, "rejected_duration_s": 0.1,
        "critique_prompt_id": critique_of["c-zero"]}
    assert "4/4" in fixed["reason"] and "0/4" in fixed["reason"] and "correctness" in fixed["reason"]
    assert fixed["pair_id"] == ids.pair_id("code_evolution", "r-fixed", "c-zero", "p1")
    assert rows["r-partly"]["margin"] == pytest.approx(0.25)
    # min_gain: the 0.25 gain no longer counts
    strict = build(prompts, candidates, scores, {**config, "min_gain": 0.25})
    assert set(strict["chosen_id"]) == {"r-fixed"}
    raw = build(prompts, candidates, scores, {**config, "pair_text": "raw"})
    raw_fixed = raw.filter(pl.col("chosen_id") == "r-fixed").to_dicts()[0]
    assert raw_fixed["chosen"] == fence("def add(a, b):\n    return a + b\n")
    assert raw_fixed["rejected"] == fence("def add(a, b):\n    return a - b\n")


def test_critique_pairs_need_scores_on_both_sides():
    revisions = [("r-fixed", "c-zero", "def add(a, b):\n    return a + b\n", (4, 4, 0.3))]
    prompts, candidates, scores, config, critique_of, later = critique_run(revisions)
    assert build(prompts, candidates, scores, config).height == 1
    # the revision's newest code_tests row is an error: no usable score, no pair
    failed = pl.concat([scores, scores_frame([("r-fixed", critique_of["c-zero"], 0, 4, 0.1, "error", later)])])
    assert build(prompts, candidates, failed, config).height == 0
    # the critiqued candidate lost its score (only the revision is scored): no pair
    assert build(prompts, candidates, scores.filter(pl.col("candidate_id") != "c-zero"), config).height == 0
    # without its parent prompt there is no original request to pair on
    assert build(prompts.filter(pl.col("prompt_id") != "p1"), candidates, scores, config).height == 0


# config and registration ----------------------------------------------------------------------

def test_registered_and_empty_frames_validate_config(tmp_path):
    assert STRATEGIES["code_evolution"] is code_evolution.STRATEGY
    empty = prompts_frame([])
    for config in ({}, {"mode": "critiques"}, {"mode": "commits", "repo": str(tmp_path)}):
        pairs = build_pairs("code_evolution", empty, EMPTY_CANDIDATES, EMPTY_SCORES, config, "r")
        assert pairs.height == 0 and pairs.columns == schemas.table("pairs").column_names
    assert derive_prompts("code_evolution", empty, EMPTY_CANDIDATES, EMPTY_SCORES, {}) == []
    bad = [
        ({"mode": "commits"}, "repo"),
        ({"mode": "commits", "repo": str(tmp_path / "missing")}, "repo"),
        ({"mode": "commits", "repo": str(tmp_path), "max_commit": 3}, "'max_commit'"),
        ({"mode": "commits", "repo": str(tmp_path), "revisions": 3}, "'revisions'.*critiques"),
        ({"mode": "commits", "repo": str(tmp_path), "max_diff_lines": 0}, "max_diff_lines"),
        ({"mode": "commits", "repo": str(tmp_path), "paths": []}, "paths"),
        ({"repo": str(tmp_path)}, "'repo'.*commits"),
        ({"mode": "critique"}, "mode"),
        ({"revisons": 2}, "'revisons'"),
        ({"revisions": 0}, "revisions"),
        ({"min_gain": 1.0}, "min_gain"),
        ({"faster_ratio": 0.5}, "faster_ratio is no longer an option.*tie on code_tests"),
        ({"efficiency_candidates_per_prompt": 1}, "efficiency_candidates_per_prompt is no longer.*tie"),
        ({"gated_rejected": "yes"}, "gated_rejected"),
        ({"max_candidates_per_prompt": -1}, "max_candidates_per_prompt"),
        ({"pair_text": "markdown"}, "pair_text"),
        ({"mode": "commits", "repo": str(tmp_path), "context_lines": -1}, "context_lines must be an integer >= 0"),
        ({"mode": "commits", "repo": str(tmp_path), "context_lines": 2.5}, "context_lines"),
        ({"mode": "commits", "repo": str(tmp_path), "scope": "hunk"}, "scope must be one of"),
        ({"mode": "commits", "repo": str(tmp_path), "scope": "file", "context_lines": 3},
         "context_lines has no effect with scope = 'file'"),
        ({"scope": "region"}, "'scope'.*a key of mode 'commits'"),
        ({"mode": "critiques", "context_lines": 8}, "'context_lines'.*a key of mode 'commits'"),
    ]
    for config, match in bad:
        with pytest.raises(ValueError, match=match):
            build(empty, config=config)
        with pytest.raises(ValueError, match=match):
            derive_prompts("code_evolution", empty, EMPTY_CANDIDATES, EMPTY_SCORES, config)
