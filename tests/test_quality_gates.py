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
    assert fired["dup_line_fraction"]["value"] > fired["dup_line_fraction"]["threshold"] == 0.5
    assert good.detail == {"gates": []}


def test_a_sentence_said_twice_in_a_short_answer_is_gated():
    """The embedded model's demo answer to "10 people on a bus, 4 get off": Gopher's line rules wait
    for 4 lines and 50 words; the sentence rule does not."""
    looped = "There are 10 people on a bus.\nThere are 10 people on a bus.\nThe answer is: 3"
    assert gates(looped) == ["dup_sentence_char_fraction"]
    assert gates("There are 10 people on a bus. 4 get off, so 10 - 4 = 6 are left. The answer is 6.") == []
    assert gates("No. No. The answer is 6.") == []  # short sentences may repeat
    # fenced code is no prose: one statement twice in a block is the line rules' to judge
    assert "dup_sentence_char_fraction" not in gates("```python\nprint('There are 10 people on a bus.')\n"
                                                     "print('There are 10 people on a bus.')\n```")


def _strong_answers() -> list[str]:
    from bench.gate_calibration import strong_answers

    return [answer for _, answer in strong_answers()]


def test_strong_models_answers_pass_the_sentence_rule():
    """AlpacaEval's GPT-4 answers and Arena-Hard's o3-mini and gemini-2.0-flash answers (2,303, songs
    with choruses and asked-for refrains among them): the sentence rule fires on none."""
    from curate.score.quality import _sentence_gates

    answers = _strong_answers()
    assert len(answers) > 2000
    assert [a[:80] for a in answers if _sentence_gates(a, len(a.split()))] == []


def test_strong_models_answers_are_gated_at_most_one_in_a_hundred():
    """Gopher's web-page thresholds gated 6.0% of these answers (code, tables, derivations, songs);
    the answer thresholds gate at most 1%, the real loops among them included."""
    answers = _strong_answers()
    gated = [a for a in answers if gates(a)]
    assert len(gated) / len(answers) <= 0.01, len(gated)


@pytest.mark.parametrize("text", [
    "```c\nint main() {\n  if (x) {\n    y();\n  }\n  if (z) {\n    w();\n  }\n  return 0;\n}\n```\nDone.",
    "| a | b |\n|---|---|\n| 1 | 2 |\n|---|---|\n| 3 | 4 |\n|---|---|\n| 5 | 6 |",
    "[Verse 1]\nThe road is long tonight\n[Chorus]\nHold on, hold tight\nHold on, hold tight\n"
    "[Verse 2]\nThe stars are out of sight\n[Chorus]\nHold on, hold tight\nHold on, hold tight",
])
def test_code_tables_and_choruses_are_no_loops(text):
    assert gates(text) == []


def test_longest_repeats_equals_the_regex_it_replaces_on_real_and_looping_text():
    """The compiled pass measures what `(.{1,40}?)\\1{7,}` matched, longest match per text: the same
    number on 2,467 real answers (gemini's loops among them) and on the embedded model's loops."""
    import re

    from bench.gate_calibration import humaneval_references
    from curate.score.quality import longest_repeats

    pattern = re.compile(r"(.{1,40}?)\1{7,}", re.DOTALL)
    texts = _strong_answers() + [text for _, text in humaneval_references()]
    texts += ["ref:" * 60, "Santel\n" * 30, "I like it. " * 12, "abcabcabcab", "x", "é" * 9 + "e\u0301" * 9]
    expected = [max((len(m.group(0)) for m in pattern.finditer(text)), default=0) for text in texts]
    assert longest_repeats(texts) == expected
    assert longest_repeats([]) == []


def _longest_repeat_by_definition(text: str, max_unit: int = 40, min_repeats: int = 8) -> int:
    """Every period, every position: the longest run where text[i] == text[i + unit], whole units."""
    best = 0
    for unit in range(1, max_unit + 1):
        run = 0
        for i in range(len(text) - unit):
            run = run + 1 if text[i] == text[i + unit] else 0
            if run + unit >= min_repeats * unit:
                best = max(best, run + unit - (run + unit) % unit)
    return best


def test_longest_repeats_probes_agree_with_checking_every_position():
    """The kernel probes one position per stretch length and widens hits; on 2,000 texts of small
    alphabets with loops of every period up to 45 planted in them, it finds what checking every
    position finds."""
    import random

    from curate.score.quality import longest_repeats

    rng = random.Random(7)
    texts = []
    for _ in range(2_000):
        alphabet = rng.choice(["ab", "abc", "a", "abcd ", "xyz\n", "ref:", "ée"])
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        unit = "".join(rng.choice("abcdef ") for _ in range(rng.randint(1, 45)))
        middle = len(text) // 2
        texts.append(text[:middle] + unit * rng.randint(0, 12) + text[middle:])
    assert longest_repeats(texts) == [_longest_repeat_by_definition(text) for text in texts]


def test_a_vllm_engine_starts_after_the_compiled_gates_ran():
    """vLLM scans every module's attributes when an engine starts; llvmlite (loaded by the gates'
    Numba pass) must not break that scan (curate.score.quality._llvmlite_lib_answers_vars)."""
    from curate.score.quality import longest_repeats

    assert longest_repeats(["ref:" * 20]) == [80]
    dispatcher = pytest.importorskip("vllm.triton_utils.dispatcher")
    dispatcher._rebind_kernels([])  # the scan an engine start runs; raised AttributeError before
