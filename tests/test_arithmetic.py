"""The arithmetic check of stated equations (curate.score.verify.arithmetic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.score.verify.arithmetic import equations, first_false

DEMO_MATH = Path(__file__).resolve().parent.parent / "data" / "demo" / "math.jsonl"


def verdicts(text):
    return [(equation.text, equation.holds) for equation in equations(text)]


@pytest.mark.parametrize("text, expected", [
    ("9 * 11 = 98", [("9 * 11 = 98", False)]),
    ("So 9 * 11 = 99 pens.", [("9 * 11 = 99", True)]),
    # a running calculation: 3 * 4 = 12, then 12 + 1 = 13
    ("3 * 4 = 12 + 1 = 13", [("3 * 4 = 12 + 1", True), ("12 + 1 = 13", True)]),
    ("3 * 4 = 12 + 1 = 14", [("3 * 4 = 12 + 1", True), ("12 + 1 = 14", False)]),
    ("3 * 4 = 11 + 2 = 13", [("3 * 4 = 11 + 2", False), ("11 + 2 = 13", True)]),
    ("1,234 + 1 = 1,235", [("1234 + 1 = 1235", True)]),
    ("8 x 3 = 24 apples, 7 − 2 = 5 and 10 ÷ 4 = 2.5", [("8 * 3 = 24", True), ("7 - 2 = 5", True)]),
    ("10 ÷ 4 = 2.5", [("10 / 4 = 2.5", True)]),
    ("$12 × 3 = $36", [("12 * 3 = 36", True)]),
    ("\\( 9 \\times 11 = 99 \\)", [("9 * 11 = 99", True)]),
    ("\\frac{1}{2} + 1 = 1.5", [("((1)/(2)) + 1 = 1.5", True)]),
    ("**Step 1:** 2 + 3 = 6", [("2 + 3 = 6", False)]),
    ("2(3 + 4) = 14", [("2 * (3 + 4) = 14", True)]),
    ("(2 + 3) * 4 = 20.", [("(2 + 3) * 4 = 20", True)]),
    ("x = 5 + 3 = 8", [("5 + 3 = 8", True)]),
    ("5 = 2 + 3", [("5 = 2 + 3", True)]),
    # decimals shown are roundings of what cannot be written exactly ...
    ("10 / 3 = 3.33", [("10 / 3 = 3.33", True)]),
    ("2 / 3 = 0.67", [("2 / 3 = 0.67", True)]),
    ("10 / 3 = 3.5", [("10 / 3 = 3.5", False)]),
    # ... but what can be written exactly must be
    ("2.5 * 4 = 10.1", [("2.5 * 4 = 10.1", False)]),
    ("0.1 + 0.2 = 0.3", [("0.1 + 0.2 = 0.3", True)]),
    ("2^10 = 1024", [("2^10 = 1024", True)]),
    ("Step 2: 5 * 4 = 20\nStep 3: 20 - 1 = 18", [("5 * 4 = 20", True), ("20 - 1 = 18", False)]),
])
def test_equations_are_found_and_checked(text, expected):
    assert verdicts(text) == expected


@pytest.mark.parametrize("text", [
    "3x + 2 = 11",            # a variable glued to the chain
    "20% of 50 = 10",         # a percentage and an operator word
    "5 + 5 = 10 times 2",     # the computation goes on in words
    "x = 5",                  # no computation stated
    "The total is 12 = 12",   # no operator
    "10 / 0 = 5",             # not a number
    "2^100000 = 5",           # too large to evaluate
    "12 / 4 = 3%",
    "at 3:00 + 2 = 5:00",     # times of day
    "2 + 3 == 5",             # code, not a statement
    "",
])
def test_what_cannot_be_judged_is_never_false(text):
    assert equations(text) == [] and first_false(text) is None


def test_first_false_is_the_first_false_link():
    text = "Step 1: 2 + 3 = 5\nStep 2: 5 * 4 = 21 = 21\nStep 3: 21 - 1 = 19"
    assert first_false(text).text == "5 * 4 = 21"
    assert first_false("Step 1: 2 + 3 = 5") is None


def test_the_demo_reference_solutions_state_only_true_equations():
    rows = [json.loads(line) for line in DEMO_MATH.read_text().splitlines() if line.strip()]
    solutions = [row["reference_solution"] for row in rows if row.get("reference_solution")]
    assert len(solutions) >= 10
    checked = [equation for solution in solutions for equation in equations(solution)]
    assert len(checked) >= len(solutions)  # each states at least one computation we read
    assert all(equation.holds for equation in checked)
    # one wrong digit in any of them is caught
    for solution in solutions:
        for equation in equations(solution):
            wrong = equation.right + "1"
            if equation.right in solution:
                assert first_false(solution.replace(f"= {equation.right}", f"= {wrong}", 1)) is not None
