"""Commit-Instruct (docs/methods.md §6.1): small single-file commits of a git repository as code edits.

`mine_commits` walks `git log --first-parent --no-merges` (newest first) and keeps a commit when:

- its parent exists (root commits and grafted shallow roots are skipped) and it touches exactly
  one path, a regular file (mode 100644/100755) matching `paths` (fnmatch globs against the
  repo-relative path; "*" also crosses "/"), with status M: adds, deletes, renames (seen as a
  delete plus an add, rename detection is off), type changes and second files all disqualify it;
- its subject has at least `min_message_words` words and is no fixup!/squash!/amend!, WIP, git
  merge ("Merge branch ...", "Merge pull request ...") or revert ("Revert ...") subject;
- `git --numstat` counts 1..`max_diff_lines` added + removed lines (binary diffs never count);
- the file before and after is UTF-8 text of at most `max_file_lines` lines with no ``` in it
  (the instruction and the pair fence the file in a ```python block);
- in scope "region", its change spans at most `max_region_lines` lines (first to last changed
  line, before and after, context aside): hunks far apart make one region of most of the file;
- the change is not formatting-only (equal once all whitespace is removed) nor comment-only
  (equal once comments and blank lines are dropped: Python token streams, comments and
  non-logical newlines removed and whitespace ignored, for .py/.pyi files that tokenize; else
  lines without full-line `#`/`//` comments and blank lines, compared stripped).

It stops at `max_commits` accepted commits, so a large repository is read only as far as needed.
Each commit is {sha, path, message (the subject), diff_lines, before, after}.

The derived prompt is task "code_edit", generation n = 0, in one of two scopes (`scope`):

- "region" (the default): the edited region, not the whole file. `edit_region` runs
  difflib.SequenceMatcher on the before/after lines, takes one span from the first to the last
  changed line (covering every hunk) and widens it by `context_lines` lines on each side, clamped to
  the file; the context is the same lines in both versions, so the span starts at the same line
  and drops the same number of trailing lines in both. With context_lines = 0 a pure insertion
  or deletion takes one line of context on each side, so that both regions anchor the change.
  Messages: `region_instruction(path, message, before_region, first, last)`; fields before/after are
  the two regions (the whole files are not stored), message; note commit/path/diff_lines, scope
  "region", before_lines/after_lines = [first, last] (1-based, inclusive; an empty side has
  last = first - 1). Whole files ran to 8k-12.5k tokens in the demo, past the model's context,
  with the first difference 1.3k-3.9k tokens in, so a trainer's truncation left two equal texts.
- "file": messages `instruction(path, message, before)` with the whole file; fields before/after
  are the whole files, message; note commit/path/diff_lines (no scope key: these prompts keep the
  ids they had before scopes existed).

`commit_picks` pairs every code_edit prompt, derived or supplied in a prompt file: chosen = fields
after, rejected = fields before (the regions or the whole files), each in a ```python block;
details_json {commit, path, diff_lines, property: "instruction"}, plus scope (and for a region
before_lines/after_lines) for a mined commit; for a supplied prompt commit and path are null,
diff_lines is counted with difflib and the texts are used whole.
"""

from __future__ import annotations

import difflib
import fnmatch
import io
import json
import os
import re
import subprocess
import tokenize
from pathlib import Path

import polars as pl

from curate.errors import UserError
from curate.pairs.derive import DerivedPrompt, derived_info, original_prompts

STRATEGY = "code_evolution"
TASK = "code_edit"
REGULAR_FILE_MODES = {"100644", "100755"}
# Variables that would point git at another repository than the one asked for.
_GIT_LOCATION_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                     "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE",
                     "GIT_PREFIX")
_SKIP_SUBJECT = re.compile(
    r"^\s*(?:(?:fixup|squash|amend)!|fixup\b|\W*wip\b|revert\b|reapply\b"
    r"|merge (?:branch|branches|pull request|remote-tracking branch|tag|commit)\b)",
    re.IGNORECASE)
_COMMENT_LINE = re.compile(r"^\s*(?:#|//)")
_FENCE = "```"
_LAYOUT = {tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE}  # where they are counts, not their text


def instruction(path: str, message: str, before: str) -> str:
    return (f"Apply this change to `{path}`: {message}\n\nHere is the current file:\n"
            f"```python\n{before}\n```\nReply with the complete updated file.")


def region_instruction(path: str, message: str, before_region: str, first: int, last: int) -> str:
    """The prompt of a region pair: lines first..last (1-based, inclusive) of the file before."""
    if last < first:
        where = "Here is the current file (it is empty):"
    elif last == first:
        where = f"Here is line {first} of the current file:"
    else:
        where = f"Here are lines {first}-{last} of the current file:"
    return (f"Apply this change to `{path}`: {message}\n\n{where}\n"
            f"```python\n{before_region}\n```\nReply with the updated lines only.")


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def _split_lines(text: str) -> list[str]:
    """Lines as git counts them: split at newlines only (str.splitlines also splits at form feeds)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def edit_region(before: str, after: str, context_lines: int) -> dict | None:
    """The edited region of a change (module docstring): {before, after: the region texts, lines
    joined by newlines, with no final newline; before_lines, after_lines: [first, last], 1-based,
    inclusive}, or None when the two have the same lines (a change of the final newline only)."""
    a, b = _split_lines(before), _split_lines(after)
    changes = [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    if not changes:
        return None
    first_a, first_b = changes[0][1], changes[0][3]  # equal: the lines before the first change match
    last_a, last_b = changes[-1][2], changes[-1][4]  # len(a) - last_a == len(b) - last_b likewise
    context = context_lines
    if context == 0 and (first_a == last_a or first_b == last_b):
        context = 1  # a pure insertion (or deletion) would leave one side with no line to anchor it
    start = max(0, first_a - context)
    tail = min(len(a) - last_a, context)  # the same lines follow the change in both
    end_a, end_b = last_a + tail, last_b + tail
    return {"before": "\n".join(a[start:end_a]), "after": "\n".join(b[start:end_b]),
            "before_lines": [start + 1, end_a], "after_lines": [start + 1, end_b]}


# mining ---------------------------------------------------------------------------------------

def _git_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_ENV}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _git(repo: str | os.PathLike, *args: str) -> bytes:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, env=_git_env())
    if proc.returncode != 0:
        error = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UserError(f"code_evolution: `git {args[0]}` failed in {str(repo)!r}: "
                        f"{error[-1] if error else f'exit {proc.returncode}'}")
    return proc.stdout


def _line_count(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def _python_tokens(code: str) -> list[tuple[int, str]] | None:
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING}
    try:
        return [(tok.type, "" if tok.type in _LAYOUT else tok.string)
                for tok in tokenize.generate_tokens(io.StringIO(code).readline) if tok.type not in skip]
    except (tokenize.TokenError, SyntaxError, ValueError):
        return None


def _without_comment_lines(code: str) -> list[str]:
    return [line.strip() for line in code.splitlines() if line.strip() and not _COMMENT_LINE.match(line)]


def formatting_only(before: str, after: str) -> bool:
    return re.sub(r"\s+", "", before) == re.sub(r"\s+", "", after)


def comment_only(before: str, after: str, path: str = "x.py") -> bool:
    if path.endswith((".py", ".pyi")):
        tokens = _python_tokens(before), _python_tokens(after)
        if None not in tokens:
            return tokens[0] == tokens[1]
    return _without_comment_lines(before) == _without_comment_lines(after)


def meaningful_subject(subject: str, min_words: int) -> bool:
    return len(subject.split()) >= min_words and not _SKIP_SUBJECT.match(subject)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a path that is not UTF-8 (decoded with surrogateescape)
        return False
    return True


def _matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


def _log_records(repo: str | os.PathLike):
    """(sha, parents, subject, raw entries, numstat entries) per first-parent non-merge commit,
    newest first, streamed so that mining stops reading once it has enough."""
    command = ["git", "-C", str(repo), "-c", "log.showSignature=false", "log", "--first-parent",
               "--no-merges", "--no-renames", "--no-color", "--no-ext-diff", "--no-textconv",
               "--no-abbrev", "-z", "--format=%x1e%H%x1f%P%x1f%s", "--raw", "--numstat", "HEAD", "--"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_git_env())
    finished = False
    try:
        pending = b""
        while True:
            chunk = proc.stdout.read1(1 << 16)
            pending += chunk
            records = pending.split(b"\x1e")
            pending = records.pop() if chunk else b""
            for record in records:
                if record:
                    yield _parse_record(record)
            if not chunk:
                break
        finished = True
    finally:
        if not finished:
            proc.kill()
        proc.stdout.close()
        error = proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
        proc.stderr.close()
        code = proc.wait()
        if finished and code != 0:
            raise UserError(f"code_evolution: `git log` failed in {str(repo)!r}: "
                            f"{error[-1] if error else f'exit {code}'}")


def _parse_record(record: bytes):
    header, _, body = record.partition(b"\0")
    sha, parents, subject = header.decode("utf-8", "replace").split("\x1f", 2)
    tokens = body.lstrip(b"\n").split(b"\0")
    raw, numstat = [], []
    i = 0
    while i < len(tokens):
        token = tokens[i].lstrip(b"\n")
        if token.startswith(b":"):
            fields = token[1:].decode("ascii", "replace").split()
            path = tokens[i + 1].decode("utf-8", "surrogateescape") if i + 1 < len(tokens) else ""
            raw.append((fields, path))
            i += 2
            continue
        if token:
            parts = token.decode("utf-8", "surrogateescape").split("\t", 2)
            numstat.append(tuple(parts) if len(parts) == 3 else ("-", "-", ""))
        i += 1
    return sha, parents.split(), subject.strip(), raw, numstat


def _blob_text(repo, blob: str) -> str | None:
    try:
        return _git(repo, "cat-file", "blob", blob).decode("utf-8")
    except UnicodeDecodeError:
        return None


def mine_commits(repo: str | os.PathLike, max_commits: int = 20, max_diff_lines: int = 40,
                 max_file_lines: int = 400, min_message_words: int = 3,
                 paths: str | list[str] = "*.py", max_region_lines: int | None = None) -> list[dict]:
    """Small single-file code commits of `repo` (see the module docstring), newest first; with
    `max_region_lines`, only those whose change spans at most that many lines, before and after."""
    if not Path(repo).is_dir():
        raise UserError(f"code_evolution: repo {str(repo)!r} is not a directory")
    _git(repo, "rev-parse", "--git-dir")  # a clear error for a directory that is no repository
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
                          capture_output=True, env=_git_env())
    if head.returncode != 0:
        return []  # a repository without commits yet
    patterns = [paths] if isinstance(paths, str) else list(paths)
    mined: list[dict] = []
    if max_commits < 1:
        return mined
    records = _log_records(repo)
    try:
        for record in records:
            if _accept(repo, record, mined, max_diff_lines, max_file_lines, min_message_words, patterns, max_region_lines) \
                    and len(mined) >= max_commits:
                break
    finally:
        records.close()  # stops git log
    return mined


def _accept(repo, record, mined: list[dict], max_diff_lines: int, max_file_lines: int,
            min_message_words: int, patterns: list[str], max_region_lines: int | None = None) -> bool:
    """Append the commit to `mined` if it passes every rule; whether it did."""
    sha, parents, subject, raw, numstat = record
    if not parents or len(raw) != 1 or len(numstat) != 1 or len(raw[0][0]) != 5:
        return False
    (old_mode, new_mode, old_blob, new_blob, status), path = raw[0]
    if (status != "M" or old_mode not in REGULAR_FILE_MODES or new_mode not in REGULAR_FILE_MODES
            or not _utf8(path) or not _matches(path, patterns) or numstat[0][2] != path):
        return False
    if not meaningful_subject(subject, min_message_words):
        return False
    added, removed = numstat[0][:2]
    if not (added.isdigit() and removed.isdigit()):
        return False  # binary
    diff_lines = int(added) + int(removed)
    if not 1 <= diff_lines <= max_diff_lines:
        return False
    before, after = _blob_text(repo, old_blob), _blob_text(repo, new_blob)
    if before is None or after is None or _FENCE in before or _FENCE in after:
        return False
    if _line_count(before) > max_file_lines or _line_count(after) > max_file_lines:
        return False
    if formatting_only(before, after) or comment_only(before, after, path):
        return False
    if max_region_lines is not None and _region_too_long(before, after, max_region_lines):
        return False
    mined.append({"sha": sha, "path": path, "message": subject, "diff_lines": diff_lines,
                  "before": before, "after": after})
    return True


def _region_too_long(before: str, after: str, max_region_lines: int) -> bool:
    """Two hunks far apart make one region of most of the file: past a trainer's context, where the
    audit's answer_context refutes the pair. The span of the change counts, context aside."""
    found = edit_region(before, after, 0)
    return found is not None and max(_line_count(found["before"]), _line_count(found["after"])) > max_region_lines


def derive_commits(options) -> list[DerivedPrompt]:
    mined = mine_commits(options.repo, options.max_commits, options.max_diff_lines, options.max_file_lines,
                         options.min_message_words, options.paths,
                         options.max_region_lines if options.scope == "region" else None)
    return [_commit_prompt(c, options.scope, options.context_lines) for c in mined]


def _commit_prompt(c: dict, scope: str, context_lines: int) -> DerivedPrompt:
    note = {"commit": c["sha"], "path": c["path"], "diff_lines": c["diff_lines"]}
    region = edit_region(c["before"], c["after"], context_lines) if scope == "region" else None
    if region is None:  # scope "file" (or no line differs, which mining never lets through)
        content = instruction(c["path"], c["message"], c["before"])
        before, after = c["before"], c["after"]
    else:
        content = region_instruction(c["path"], c["message"], region["before"], *region["before_lines"])
        before, after = region["before"], region["after"]
        note.update(scope="region", before_lines=region["before_lines"], after_lines=region["after_lines"])
    return DerivedPrompt(parent_prompt_id=None, task=TASK, messages=[{"role": "user", "content": content}],
                         fields={"before": before, "after": after, "message": c["message"]},
                         generation={"n": 0}, note=note)


# pairs ----------------------------------------------------------------------------------------

def _difflib_lines(before: str, after: str) -> int:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return sum(1 for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---")))


def _span(lines) -> str:
    first, last = lines if isinstance(lines, list) and len(lines) == 2 else ("?", "?")
    return f"lines {first}-{last}"


def commit_picks(prompts: pl.DataFrame) -> list[dict]:
    """Pick rows (see rows.PICK_COLUMNS) for every code_edit prompt: derived by this strategy or
    supplied by the user."""
    notes = {pid: json.loads(note) for pid, strategy, note in
             derived_info(prompts).select("prompt_id", "strategy", "note").iter_rows() if strategy == STRATEGY}
    own = set(original_prompts(prompts)["prompt_id"].to_list()) | set(notes)
    picks = []
    rows = prompts.filter((pl.col("task") == TASK) & pl.col("prompt_id").is_in(sorted(own)))
    for row in rows.select("prompt_id", "messages", "task_fields_json").iter_rows(named=True):
        fields = json.loads(row["task_fields_json"] or "{}")
        before, after, message = fields.get("before"), fields.get("after"), fields.get("message")
        if not isinstance(before, str) or not isinstance(after, str) or before == after:
            continue
        note = notes.get(row["prompt_id"], {})
        sha, path = note.get("commit"), note.get("path")
        diff_lines = note.get("diff_lines")
        if diff_lines is None:
            diff_lines = _difflib_lines(before, after)
        details = {"commit": sha, "path": path, "diff_lines": diff_lines, "property": "instruction"}
        if sha:
            ids = (f"commit:{sha}:after", f"commit:{sha}:before")
            scope = note.get("scope", "file")
            details["scope"] = scope
            if scope == "region":
                spans = {key: note.get(key) for key in ("before_lines", "after_lines")}
                details.update(spans)
                after_span, before_span = (_span(spans[key]) for key in ("after_lines", "before_lines"))
                what = f"{after_span} after the change over {before_span} before it"
            else:
                what = "the file after the change over before it"
            reason = f"commit {sha[:12]} of {path}: {what} ({message})"
        else:
            ids = (f"code_edit:{row['prompt_id']}:after", f"code_edit:{row['prompt_id']}:before")
            reason = f"code edit: the file after the change over before it ({message})"
        picks.append({
            "prompt_id": row["prompt_id"], "prompt": row["messages"], "chosen": fenced(after),
            "rejected": fenced(before), "chosen_id": ids[0], "rejected_id": ids[1], "scorer": None,
            "chosen_score": None, "rejected_score": None, "margin": None, "reason": reason,
            "details_json": json.dumps(details),
        })
    return picks
