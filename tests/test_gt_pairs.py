"""Ground-truth pairs: the reference over model candidates, the teacher over the student."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from curate import ids
from curate.lake import schemas
from curate.pairs import gt
from curate.pairs.registry import STRATEGIES, build_pairs

NOW = datetime(2024, 7, 8, tzinfo=timezone.utc)


def prompt_row(pid, task="math", solution="reference solution", answer="1", constraints=None):
    return {"prompt_id": pid, "source": "s", "task": task,
            "messages": [{"role": "user", "content": f"question {pid}"}],
            "reference_answer": answer, "reference_solution": solution,
            "constraints_json": json.dumps(constraints) if constraints else None,
            "run_id": "r0", "created_at": NOW}


def prompts_frame(rows):
    return pl.from_arrow(schemas.conform("prompts", rows))


def candidates_frame(rows):
    """rows: (candidate_id, prompt_id, text[, model[, sample_index]])."""
    out = []
    for i, row in enumerate(rows):
        cid, pid, text = row[:3]
        model = row[3] if len(row) > 3 else "gen@fp"
        index = row[4] if len(row) > 4 else i
        out.append({"candidate_id": cid, "prompt_id": pid, "model": model, "sampling_json": "{}",
                    "sample_index": index, "seed": i, "text": text, "run_id": "r0", "created_at": NOW})
    return pl.from_arrow(schemas.conform("candidates", out))


def scores_frame(rows):
    """rows: (candidate_id, prompt_id, score[, scorer])."""
    out = []
    for row in rows:
        cid, pid, score, scorer = (*row, "math_verify")[:4]
        out.append({"score_id": ids.score_id(cid, scorer, "1"), "candidate_id": cid, "prompt_id": pid,
                    "scorer": scorer, "scorer_version": "1", "score": score, "status": "ok",
                    "run_id": "r0", "created_at": NOW})
    return pl.from_arrow(schemas.conform("scores", out))


def build(prompts, candidates, scores=None, config=None):
    return build_pairs("gt", prompts, candidates, scores if scores is not None else scores_frame([]), config or {},
                    run_id="run-x")


def picks(pairs):
    return list(zip(pairs["prompt_id"], pairs["chosen_id"], pairs["rejected_id"]))


def test_gt_is_registered():
    assert STRATEGIES["gt"] is gt.STRATEGY
    empty = build_pairs("gt", prompts_frame([]), candidates_frame([]), scores_frame([]), {}, "r")
    assert empty.height == 0  # build_pairs finds it by name


# reference mode --------------------------------------------------------------------------------
FIVE = [("a", "p1", "wrong a"), ("b", "p1", "right b"), ("c", "p1", "unscored c"), ("d", "p1", "wrong d"),
        ("e", "p1", "half e")]
FIVE_SCORES = [("a", "p1", 0.0), ("b", "p1", 1.0), ("d", "p1", 0.0), ("e", "p1", 0.5)]


def test_reference_over_the_lowest_scored_incorrect_candidate():
    pairs = build(prompts_frame([prompt_row("p1")]), candidates_frame(FIVE), scores_frame(FIVE_SCORES))
    assert pairs.height == 1
    row = pairs.to_dicts()[0]
    assert (row["chosen_id"], row["rejected_id"]) == ("reference", "a")
    assert (row["chosen"], row["rejected"]) == ("reference solution", "wrong a")
    assert (row["chosen_score"], row["rejected_score"], row["margin"]) == (1.0, 0.0, 1.0)
    assert row["scorer"] == "math_verify"
    assert row["prompt"] == [{"role": "user", "content": "question p1"}]
    assert row["pair_id"] == ids.pair_id("gt", "reference", "a", "p1")
    assert "reference_solution" in row["reason"] and "math_verify" in row["reason"]
    assert json.loads(row["details_json"]) == {"mode": "reference", "reference_field": "reference_solution",
                                               "correct": False}
    assert json.loads(row["params_json"])["mode"] == "reference"
    schemas.conform("pairs", pairs.to_arrow())


def test_max_pairs_per_prompt_orders_lowest_first_and_never_takes_unscored():
    # Changed with the pairing rule: the unscored candidate c is never a rejected (it used to
    # come after the scored ones), nor is the correct b.
    prompts, candidates, scores = prompts_frame([prompt_row("p1")]), candidates_frame(FIVE), scores_frame(FIVE_SCORES)
    three = build(prompts, candidates, scores, {"max_pairs_per_prompt": 3})
    assert set(three["rejected_id"]) == {"a", "d", "e"}
    every = build(prompts, candidates, scores, {"max_pairs_per_prompt": 10})
    assert set(every["rejected_id"]) == {"a", "d", "e"}  # b is correct, c unscored: neither pairs
    assert set(build(prompts, candidates, scores, {"max_pairs_per_prompt": 2})["rejected_id"]) == {"a", "d"}


def test_keep_correct_and_correct_min():
    # Changed with the pairing rule: keep_correct no longer pairs b (1.0 ties the reference's 1.0).
    prompts, candidates, scores = prompts_frame([prompt_row("p1")]), candidates_frame(FIVE), scores_frame(FIVE_SCORES)
    kept = build(prompts, candidates, scores, {"max_pairs_per_prompt": 10, "keep_correct": True})
    assert set(kept["rejected_id"]) == {"a", "d", "e"}
    strict = build(prompts, candidates, scores, {"max_pairs_per_prompt": 10, "correct_min": 0.5})
    assert set(strict["rejected_id"]) == {"a", "d"}  # e (0.5) counts as correct now
    lenient = build(prompts, candidates, scores, {"max_pairs_per_prompt": 10, "correct_min": 0.5,
                                                  "keep_correct": True})
    correct = lenient.filter(pl.col("rejected_id") == "e").to_dicts()[0]
    assert correct["margin"] == 0.5 and "keep_correct" in correct["reason"]
    assert json.loads(correct["details_json"])["correct"] is True


def test_prompts_without_reference_skipped_unless_reference_answer_allowed():
    prompts = prompts_frame([prompt_row("p-sol", solution="worked solution", answer="42"),
                             prompt_row("p-ans", solution=None, answer="42"),
                             prompt_row("p-none", solution="  ", answer=None)])
    candidates = candidates_frame([("a", "p-sol", "x"), ("b", "p-ans", "y"), ("c", "p-none", "z")])
    scores = scores_frame([("a", "p-sol", 0.0), ("b", "p-ans", 0.0), ("c", "p-none", 0.0)])
    assert picks(build(prompts, candidates, scores)) == [("p-sol", "reference", "a")]
    both = build(prompts, candidates, scores, {"use_reference_answer": True})
    assert picks(both) == [("p-ans", "reference", "b"), ("p-sol", "reference", "a")]
    assert both["chosen"].to_list() == ["42", "worked solution"]  # a solution is preferred to the answer
    assert json.loads(both["details_json"][0])["reference_field"] == "reference_answer"


def test_default_verifier_per_task():
    constraints = [{"type": "punctuation:no_comma", "kwargs": {}}]
    prompts = prompts_frame([
        prompt_row("p-math"), prompt_row("p-code", task="code"),
        prompt_row("p-inst", task="instruction", constraints=constraints), prompt_row("p-chat", task="chat"),
    ])
    candidates = candidates_frame([
        ("m1", "p-math", "m1"), ("m2", "p-math", "m2"),
        ("c1", "p-code", "c1"), ("c2", "p-code", "c2"),
        ("i1", "p-inst", "i1"), ("i2", "p-inst", "i2"),
        ("h1", "p-chat", "h1"),
    ])
    scores = scores_frame([
        ("m1", "p-math", 1.0), ("m2", "p-math", 0.0),
        ("c1", "p-code", 0.0, "code_tests"), ("c2", "p-code", 1.0, "code_tests"),
        ("c1", "p-code", 1.0),                              # another scorer: not the code verifier
        ("i1", "p-inst", 1.0, "constraints"), ("i2", "p-inst", 0.5, "constraints"),
        ("h1", "p-chat", 0.0),
    ])
    pairs = build(prompts, candidates, scores, {"near_miss_only": False})  # c1 passes no test: no near miss
    # a chat prompt has no verifier: its candidates are unscored and never pair (the pairing rule)
    assert picks(pairs) == [("p-code", "reference", "c1"), ("p-inst", "reference", "i2"),
                            ("p-math", "reference", "m2")]
    assert pairs["scorer"].to_list() == ["code_tests", "constraints", "math_verify"]
    assert pairs["rejected_score"].to_list() == [0.0, 0.5, 0.0]
    assert pairs["chosen_score"].to_list() == [1.0, 1.0, 1.0]
    assert pairs["margin"].to_list() == [1.0, 0.5, 1.0]


def test_configured_verifier_and_verifier_table():
    prompts = prompts_frame([prompt_row("p1"), prompt_row("p2", task="chat")])
    candidates = candidates_frame([("a", "p1", "a"), ("b", "p1", "b"), ("c", "p2", "c"), ("d", "p2", "d")])
    scores = scores_frame([("a", "p1", 0.2, "reward:rm"), ("b", "p1", 3.0, "reward:rm"),
                           ("c", "p2", 0.7, "reward:rm"), ("d", "p2", -1.0, "reward:rm"),
                           ("a", "p1", 1.0)])
    # Changed with the pairing rule: a reward model is no correctness check, the reference has no
    # score on its scale, so no pair could ever show the reference strictly better: a config error.
    with pytest.raises(ValueError, match="correctness verifier.*reward:rm"):
        build(prompts, candidates, scores, {"verifier": "reward:rm"})
    with pytest.raises(ValueError, match="correctness verifier.*reward:rm"):
        build(prompts, candidates, scores, {"verifier": {"math": "math_verify", "chat": "reward:rm"}})
    scores = pl.concat([scores, scores_frame([("b", "p1", 0.0)])])
    table = build(prompts, candidates, scores, {"verifier": {"math": "math_verify"}})
    assert picks(table) == [("p1", "reference", "b")]  # a is correct by math_verify; chat has none
    assert picks(build(prompts, candidates, scores, {"verifier": "constraints"})) == []  # none scored


def test_candidate_equal_to_the_reference_or_without_text_never_paired():
    prompts = prompts_frame([prompt_row("p1", solution="x = 2")])
    candidates = candidates_frame([("a", "p1", "  x = 2\n"), ("b", "p1", None), ("c", "p1", "x = 3")])
    scores = scores_frame([("a", "p1", 0.0), ("b", "p1", 0.0), ("c", "p1", 0.0)])
    assert picks(build(prompts, candidates, scores, {"max_pairs_per_prompt": 5})) == [("p1", "reference", "c")]


def test_reference_config_errors_name_the_key():
    prompts, candidates = prompts_frame([prompt_row("p1")]), candidates_frame([("a", "p1", "a")])
    with pytest.raises(ValueError, match="'max_pairs'"):
        build(prompts, candidates, config={"max_pairs": 2})
    with pytest.raises(ValueError, match="'teacher'.*teacher_student"):
        build(prompts, candidates, config={"teacher": "big"})
    with pytest.raises(ValueError, match="mode"):
        build(prompts, candidates, config={"mode": "gold"})
    with pytest.raises(ValueError, match="max_pairs_per_prompt"):
        build(prompts, candidates, config={"max_pairs_per_prompt": 0})


# teacher_student mode --------------------------------------------------------------------------
TS = {"mode": "teacher_student", "teacher": "big", "student": "small"}


def ts_set(task="chat"):
    prompts = prompts_frame([prompt_row(p, task=task, solution=None) for p in ("p1", "p2", "p3", "p4")])
    candidates = candidates_frame([
        ("t10", "p1", "teacher p1 #0", "big@fp1", 0), ("t11", "p1", "teacher p1 #1", "big@fp1", 1),
        ("t12", "p1", "teacher p1 #2", "big@fp1", 2),
        ("s10", "p1", "student p1 #0", "small@fp2", 0), ("s11", "p1", "student p1 #1", "small", 1),
        ("s12", "p1", "student p1 #2", "small@fp2", 2),
        ("x10", "p1", "smaller p1 #0", "smaller@fp3", 0),      # "smaller" is not "small"
        ("t20", "p2", "teacher p2 #0", "big@fp1", 0),           # no student sample at all
        ("t31", "p3", "teacher p3 #1", "big@fp1", 1),           # indices do not meet
        ("s30", "p3", "student p3 #0", "small@fp2", 0),
        ("t40", "p4", "same text", "big@fp1", 0), ("s40", "p4", "same text", "small@fp2", 0),
    ])
    return prompts, candidates


def ts_verdicts(candidates):
    """math_verify: every teacher sample right, every student sample wrong."""
    return scores_frame([(cid, pid, 1.0 if model.startswith("big") else 0.0) for cid, pid, model in
                         candidates.select("candidate_id", "prompt_id", "model").iter_rows()])


def test_teacher_student_pairs_by_sample_index():
    prompts, candidates = ts_set("math")
    scores = ts_verdicts(candidates)
    one = build(prompts, candidates, scores, config=TS)
    assert picks(one) == [("p1", "t10", "s10")]
    row = one.to_dicts()[0]
    assert (row["chosen"], row["rejected"]) == ("teacher p1 #0", "student p1 #0")
    # no agree_scorer: the task's verifier is the evidence
    assert row["scorer"] == "math_verify" and row["margin"] == 1.0 and row["chosen_score"] == 1.0
    assert "teacher big (big@fp1)" in row["reason"] and "student small (small@fp2)" in row["reason"]
    assert json.loads(row["details_json"]) == {"mode": "teacher_student", "teacher_model": "big@fp1",
                                               "student_model": "small@fp2", "sample_index": 0}
    assert json.loads(row["params_json"])["teacher"] == "big"
    schemas.conform("pairs", one.to_arrow())
    two = build(prompts, candidates, scores, config={**TS, "pairs_per_prompt": 2})
    assert sorted(picks(two)) == [("p1", "t10", "s10"), ("p1", "t11", "s11")]  # the bare label "small" too
    every = build(prompts, candidates, scores, config={**TS, "pairs_per_prompt": 5})
    assert sorted(picks(every)) == [("p1", "t10", "s10"), ("p1", "t11", "s11"), ("p1", "t12", "s12")]
    # Changed with the pairing rule: no verifier (chat) and no agree_scorer -> no evidence, no pair
    chat_prompts, chat_candidates = ts_set()
    assert build(chat_prompts, chat_candidates, config={**TS, "pairs_per_prompt": 5}).height == 0
    # both wrong (0 vs 0, the demo's 27 ties): no pair
    tied = scores.with_columns(pl.lit(0.0).alias("score"))
    assert build(prompts, candidates, tied, config={**TS, "pairs_per_prompt": 5}).height == 0


def test_agree_scorer_keeps_pairs_the_scorer_agrees_with():
    prompts, candidates = ts_set()
    scores = scores_frame([("t10", "p1", 0.9, "reward:rm"), ("s10", "p1", 0.4, "reward:rm"),
                           ("t11", "p1", 0.3, "reward:rm"), ("s11", "p1", 0.6, "reward:rm"),  # disagrees
                           ("t12", "p1", 0.5, "reward:rm"),                                    # s12 unscored
                           ("s12", "p1", 0.1, "math_verify")])
    config = {**TS, "pairs_per_prompt": 3, "agree_scorer": "reward:rm"}
    pairs = build(prompts, candidates, scores, config)
    assert picks(pairs) == [("p1", "t10", "s10")]
    row = pairs.to_dicts()[0]
    assert row["scorer"] == "reward:rm"
    assert (row["chosen_score"], row["rejected_score"]) == (0.9, 0.4)
    assert row["margin"] == pytest.approx(0.5)
    assert "reward:rm agrees" in row["reason"]
    assert build(prompts, candidates, scores, {**config, "agree_min_margin": 0.6}).height == 0
    assert build(prompts, candidates, scores, {**config, "agree_min_margin": 0.5}).height == 1
    # Changed with the pairing rule: equal scores are a tie, never a pair (it used to be teacher >= student)
    tied = scores_frame([("t10", "p1", 0.5, "reward:rm"), ("s10", "p1", 0.5, "reward:rm")])
    assert picks(build(prompts, candidates, tied, config)) == []
    assert picks(build(prompts, candidates, tied, {**config, "agree_min_margin": -1.0})) == []


def test_teacher_student_config_errors():
    prompts, candidates = ts_set()
    with pytest.raises(ValueError, match="student"):
        build(prompts, candidates, config={"mode": "teacher_student", "teacher": "big"})
    with pytest.raises(ValueError, match="differ"):
        build(prompts, candidates, config={**TS, "student": "big"})
    with pytest.raises(ValueError, match="'keep_correct'.*reference"):
        build(prompts, candidates, config={**TS, "keep_correct": True})
    with pytest.raises(ValueError, match="agree_scorer"):
        build(prompts, candidates, config={**TS, "agree_min_margin": 0.1})


def test_empty_inputs_give_an_empty_pairs_table():
    for config in ({}, TS):
        pairs = build(prompts_frame([]), candidates_frame([]), config=config)
        assert pairs.height == 0 and pairs.columns == schemas.table("pairs").column_names


def test_a_code_reference_is_chosen_in_the_fenced_form_the_prompt_asks_for():
    from curate.score.verify.code import extract_code
    from curate.score.verify.humaneval import load_humaneval

    problem = load_humaneval()[2]  # truncate_number: its prompt asks for one ```python block
    row = {**prompt_row("p1", task="code", solution=problem["reference_solution"], answer=None),
           "messages": problem["messages"]}
    wrong = "```python\ndef truncate_number(number: float) -> float:\n    return int(str(number))\n```"
    pairs = build(prompts_frame([row]), candidates_frame([("a", "p1", wrong)]),
                  scores_frame([("a", "p1", 0.0, "code_tests")]), {"near_miss_only": False})
    chosen = pairs["chosen"][0]
    assert "one ```python code block" in problem["messages"][0]["content"]
    assert chosen.startswith("```python\n") and chosen.endswith("\n```")
    assert extract_code(chosen).strip() == problem["reference_solution"].strip()


def test_wrong_code_that_passes_no_test_is_no_near_miss():
    """The demo's HumanEval rejecteds that passed none of the tests were nonsense code (a tuple for
    a number, undefined names): trivial pairs. One that passes some tests stays."""
    from curate.pairs import rule

    prompts = prompts_frame([prompt_row("p1", task="code"), prompt_row("p2", task="code")])
    candidates = candidates_frame([("a", "p1", "a"), ("b", "p2", "b")])
    scores = scores_frame([("a", "p1", 0.0, "code_tests"), ("b", "p2", 0.6, "code_tests")])
    with rule.counting() as refused:
        pairs = build(prompts, candidates, scores)
    assert picks(pairs) == [("p2", "reference", "b")] and refused == {"no_near_miss": 1}
