"""Quality gates (curate/score/quality.py) on real text (HumanEval's reference solutions, IFEval's
prompts) and on the degenerate answers the embedded model writes ("ref:ref:ref:...",
"Santel\nSantel\n...")."""

from __future__ import annotations

import pytest

from curate.score import ScoreItem
from curate.score.quality import NAME, VERSION, QualityScorer, quality_gates


def gates(text, finish_reason="stop"):
    return [g["gate"] for g in quality_gates(text, finish_reason)]


@pytest.mark.parametrize("text", [
    "ref:" * 60,
    "Santel\n" * 30,
    "The answer is 5. " * 20,
    "=" * 80,
    "I like it. I like it. I like it. I like it. I like it. I like it. I like it. I like it. "
    "I like it. I like it. I like it. I like it.",
])
def test_degenerate_repetition_is_gated(text):
    assert gates(text)


@pytest.mark.parametrize("text", [
    "No, no.", "5\n5", "Yes yes yes", "ha ha ha ha", "Hello!\nHello!", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
    "x = 1\nx = 1\nprint(x)", "**Answer:** 12\n\n**Answer:** 12",
])
def test_short_texts_are_not_flagged_for_repeating_a_word_or_two(text):
    assert gates(text) == []


def test_empty_and_truncated():
    assert gates("") == ["empty"] and gates("  \n\t ") == ["empty"] and gates(None, None) == ["empty"]
    assert gates("The answer is", "length") == ["stopped_at_max_tokens"]
    assert gates("The answer is 5.", "stop") == []


def test_humaneval_reference_solutions_pass():
    from curate.score.verify.humaneval import load_humaneval

    solutions = [row["reference_solution"] for row in load_humaneval()]
    flagged = [s for s in solutions if gates(s)]
    assert len(solutions) == 164 and len(flagged) <= 1, flagged


def test_ifeval_prompts_mostly_pass():
    """IFEval's prompts are real requests, some with templates that repeat by design
    ("* This is bullet point 1 / 2 / ..."): few may fire, never most."""
    from curate.score.verify.constraints import load_ifeval_prompts

    prompts = [row["messages"][-1]["content"] for row in load_ifeval_prompts()]
    flagged = [p for p in prompts if gates(p)]
    assert len(prompts) == 541 and len(flagged) / len(prompts) < 0.03, len(flagged)


def test_scorer_rows_name_each_gate_with_its_value():
    items = [ScoreItem("c1", "p1", "chat", [], "Santel\n" * 30, {"finish_reason": "length"}),
             ScoreItem("c2", "p1", "chat", [], "A calm sea at night.", {"finish_reason": "stop"})]
    scorer = QualityScorer()
    assert (scorer.name, scorer.version, scorer.tasks) == (NAME, VERSION, None)
    bad, good = scorer.score(items)
    assert (bad.score, bad.status, good.score, good.status) == (0.0, "ok", 1.0, "ok")
    fired = {g["gate"]: g for g in bad.detail["gates"]}
    assert {"stopped_at_max_tokens", "dup_line_fraction"} <= set(fired)
    assert fired["dup_line_fraction"]["value"] > fired["dup_line_fraction"]["threshold"] == 0.3
    assert good.detail == {"gates": []}
