"""HumanEval through the sandbox: every canonical solution passes, a broken one of each fails."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from curate.ingest.validate import validate_row
from curate.sandbox.isolation import run_tests
from curate.score.verify.humaneval import load_humaneval

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox_to_itself")]


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    return load_humaneval()


def test_rows_are_valid_code_prompts(problems):
    assert len(problems) == 164
    assert len({p["task_id"] for p in problems}) == 164
    now = datetime.now(timezone.utc)
    for row in problems:
        prompt = validate_row(row, "humaneval", "run", now)
        assert prompt["task"] == "code"
        prompt_code = row["messages"][0]["content"].split("```python\n", 1)[1].removesuffix("```")
        assert prompt["reference_solution"].startswith(prompt_code)
        assert "def check(candidate)" in row["tests"]
        assert f"def {row['entry_point']}" in row["reference_solution"]


def _broken(row: dict) -> str:
    """The prompt with `return None` as the entry point's body."""
    prompt = row["messages"][0]["content"].split("```python\n", 1)[1].removesuffix("```")
    return prompt + "    return None\n"


def test_canonical_pass_and_broken_fail(problems):
    jobs = [(row, row["reference_solution"], True) for row in problems]
    jobs += [(row, _broken(row), False) for row in problems]
    start = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda job: run_tests(job[1], job[0]["tests"], job[0]["entry_point"]), jobs))
    elapsed = time.monotonic() - start
    print(f"\nHumanEval: {len(jobs)} sandbox runs in {elapsed:.1f} s "
          f"({len(jobs) / elapsed:.1f}/s, 2 threads)")
    bad = []
    for (row, _, canonical), result in zip(jobs, results, strict=True):
        if canonical and not (result.status == "passed" and result.tests_passed == result.tests_total > 0):
            bad.append((row["task_id"], "canonical", result.status, result.reason))
        if not canonical and not (result.status == "failed" and result.tests_passed < result.tests_total):
            bad.append((row["task_id"], "broken", result.status, result.reason))
    assert bad == []
