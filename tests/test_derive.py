"""Derived prompts: stored like prompts, generated as they ask, hidden from other strategies."""

from __future__ import annotations

import json

import polars as pl

from curate.generate import SamplingSettings, plan_requests
from curate.pairs.derive import DerivedPrompt, derived_info, derived_prompt_rows, original_prompts

PARENT = [{"role": "user", "content": "What is 2 + 2?"}]


def _derived(prefix: str, n: int = 3) -> DerivedPrompt:
    return DerivedPrompt("p-parent", PARENT, "math", {"reference_answer": "4"},
                         {"n": n, "max_tokens": 32, "assistant_prefix": prefix}, {"prefix_steps": 1})


def test_derived_rows_are_content_addressed_and_carry_their_plan():
    first = derived_prompt_rows([_derived("Step 1: 2 + 2\n"), _derived("Step 1: 2 + 2\n")], "stepwise", "run-1")
    again = derived_prompt_rows([_derived("Step 1: 2 + 2\n")], "stepwise", "run-2")
    other = derived_prompt_rows([_derived("Step 1: 2 * 2\n")], "stepwise", "run-1")
    assert first.num_rows == 1  # the same derived prompt twice is one row
    assert first.column("prompt_id").to_pylist() == again.column("prompt_id").to_pylist()
    assert first.column("prompt_id")[0] != other.column("prompt_id")[0]
    row = first.to_pylist()[0]
    assert row["source"] == "derived:stepwise" and row["reference_answer"] == "4" and row["task"] == "math"
    info = derived_info(pl.from_arrow(first)).row(0, named=True)
    assert info["strategy"] == "stepwise" and info["parent_prompt_id"] == "p-parent"
    assert json.loads(info["generation"])["assistant_prefix"] == "Step 1: 2 + 2\n"


def test_plan_requests_follows_the_derived_generation_plan():
    prompts = pl.from_arrow(derived_prompt_rows([_derived("Step 1: 2 + 2\n", n=2)], "stepwise", "r"))
    requests = plan_requests(prompts, "fp", lambda task: SamplingSettings(n=5, max_tokens=512))
    assert len(requests) == 2
    assert all(r.assistant_prefix == "Step 1: 2 + 2\n" and r.sampling.max_tokens == 32 for r in requests)
    none = pl.from_arrow(derived_prompt_rows([_derived("x", n=0)], "code_evolution", "r"))
    assert plan_requests(none, "fp", lambda task: SamplingSettings(n=5)) == []


def test_original_prompts_leave_derived_ones_out():
    from curate.lake import schemas
    plain = schemas.conform("prompts", [{
        "prompt_id": "p-parent", "source": "file", "task": "math", "messages": PARENT, "reference_answer": "4",
        "run_id": "r", "created_at": derived_prompt_rows([_derived("a")], "s", "r").column("created_at")[0].as_py(),
    }])
    both = pl.concat([pl.from_arrow(plain), pl.from_arrow(derived_prompt_rows([_derived("a")], "s", "r"))])
    assert original_prompts(both)["prompt_id"].to_list() == ["p-parent"]
