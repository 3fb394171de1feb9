"""The code_tests scorer: the fraction of a prompt's tests a response's code passes, run in the
sandbox (curate.sandbox.isolation; the code never runs anywhere else)."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

from curate.progress import progress
from curate.sandbox.isolation import SandboxLimits, isolation, run_tests
from curate.score import ScoreItem, ScoreResult
from curate.score.kind import ScorerKind

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The last ```python block of `text`, else its last fenced block, else the whole text. With
    `entry_point`, the last of those blocks that defines it comes first: an answer often ends with
    a block of example calls, which alone would fail on load for a reason that is not its code."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS] or [body for _, body in blocks]
    if not python:
        return text
    if entry_point:
        defines = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+%s\b" % re.escape(entry_point), re.M)
        defining = [body for body in python if defines.search(body)]
        if defining:
            return defining[-1]
    return python[-1]


class CodeTestsScorer:
    """Fraction of the prompt's tests that the response's code passes, run in the sandbox."""

    name = "code_tests"
    # 2: the block that defines the entry point, not example calls after it; 3: the judge in a
    # process of its own (a program that faked its tests passed under 2)
    version = "3"
    tasks = frozenset({"code"})

    def __init__(self, limits: SandboxLimits = SandboxLimits(), workers: int = 2):
        self.limits = limits
        self.workers = workers

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        if not items:
            return []
        isolation()  # a UserError here, once, rather than one per item
        with ThreadPoolExecutor(self.workers, thread_name_prefix="code-sandbox") as pool:
            return list(progress(pool.map(self._score_one, items), len(items), f"score {self.name}", "candidate"))

    def _score_one(self, item: ScoreItem) -> ScoreResult:
        try:
            fields = json.loads(item.prompt.get("task_fields_json") or "{}")
        except (TypeError, ValueError) as exc:
            return ScoreResult(None, "error", {"error": f"bad task_fields_json: {exc}"})
        tests = fields.get("tests")
        if not isinstance(tests, str) or not tests.strip():
            return ScoreResult(None, "error", {"error": "the prompt has no tests"})
        entry_point = fields.get("entry_point")
        result = run_tests(extract_code(item.text, entry_point), tests, entry_point, self.limits)
        if not result.tests_valid:
            return ScoreResult(None, "error", {"error": result.reason})
        detail = {"status": result.status, "tests_passed": result.tests_passed,
                  "tests_total": result.tests_total, "reason": result.reason[:500],
                  "duration_s": result.duration_s}
        score = result.tests_passed / result.tests_total if result.tests_total else 0.0
        return ScoreResult(score, "ok", detail)


KIND = ScorerKind("code_tests", lambda spec, models: CodeTestsScorer(), verifies="code")
