"""Verifier scorers: constraint checkers, math answers, and score_candidates over lake-shaped frames."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from curate import ids
from curate.lake import schemas
from curate.score import ScoreItem, score_candidates
from curate.score.math_answer import Extracted, MathVerifier, extract_final_answer, verify_answer
from curate.score.verifiers import ConstraintScorer, MathAnswerScorer
from curate.score.verify.constraints import (
    CHECKERS,
    check_all,
    check_constraint,
    constraint_errors,
    count_words,
)

NOW = datetime(2024, 5, 6, tzinfo=timezone.utc)


# constraints -------------------------------------------------------------------------------

def _c(type_, **kwargs):
    return {"type": type_, "kwargs": kwargs}


def test_count_words():
    assert count_words("one, two;   three!") == 3
    assert count_words("") == 0
    assert count_words("don't stop") == 3  # \b\w+\b splits on the apostrophe


@pytest.mark.parametrize("text, relation, n, expected", [
    ("one two three", "less than", 4, True),
    ("one two three", "less than", 3, False),
    ("one two three", "at least", 3, True),
    ("one two three", "at least", 4, False),
    ("!!", "less than", 1, True),
    ("!!", "at least", 0, True),
    ("", "less than", 1, False),  # a blank response follows nothing (IFEval's harness)
    ("  \n", "at least", 0, False),
])
def test_number_words(text, relation, n, expected):
    constraint = _c("length_constraints:number_words", relation=relation, num_words=n)
    assert check_constraint(text, constraint) is expected


def test_keywords_existence():
    constraint = _c("keywords:existence", keywords=["Ocean", "blue"])
    assert check_constraint("The ocean is BLUE.", constraint) is True
    assert check_constraint("The ocean is green.", constraint) is False
    # keywords are matched literally, not as regexes
    assert check_constraint("a+b", _c("keywords:existence", keywords=["a+b"])) is True
    assert check_constraint("aab", _c("keywords:existence", keywords=["a+b"])) is False


def test_forbidden_words():
    constraint = _c("keywords:forbidden_words", forbidden_words=["bad", "Evil"])
    assert check_constraint("A good and kind day.", constraint) is True
    assert check_constraint("Nothing EVIL here.", constraint) is False
    assert check_constraint("That is bad.", constraint) is False
    # whole words only: "badge" does not contain the word "bad"
    assert check_constraint("A shiny badge.", constraint) is True


def test_english_lowercase():
    constraint = {"type": "change_case:english_lowercase"}
    assert check_constraint("all lower case, 123.", constraint) is True
    assert check_constraint("Not all lower.", constraint) is False
    assert check_constraint("1234 !!", constraint) is False  # no letters at all
    assert check_constraint("", constraint) is False


def test_check_all_returns_one_bool_per_constraint():
    constraints = [
        {"type": "change_case:english_lowercase"},
        _c("length_constraints:number_words", relation="at least", num_words=10),
        _c("keywords:existence", keywords=["sea"]),
    ]
    assert check_all("the sea is calm", constraints) == [True, False, True]


def test_constraint_errors_accepts_valid_list():
    constraints = [
        _c("length_constraints:number_words", relation="less than", num_words=50),
        _c("keywords:existence", keywords=["a"]),
        _c("keywords:forbidden_words", forbidden_words=["b"]),
        {"type": "change_case:english_lowercase"},
    ]
    assert {c["type"] for c in constraints} <= set(CHECKERS)
    assert constraint_errors(constraints) == []


@pytest.mark.parametrize("constraints, fragment", [
    (None, "non-empty list"),
    ([], "non-empty list"),
    ({"type": "keywords:existence"}, "non-empty list"),
    (["keywords:existence"], "constraints[0] needs a string `type`"),
    ([{"kwargs": {}}], "constraints[0] needs a string `type`"),
    ([{"type": 3}], "constraints[0] needs a string `type`"),
    ([{"type": "nope"}], "constraints[0]: unknown constraint type 'nope'"),
    ([{"type": "keywords:existence", "kwargs": "x"}], "constraints[0].kwargs must be an object"),
    ([_c("length_constraints:number_words", relation="more than", num_words=3)], "relation must be one of"),
    ([_c("length_constraints:number_words", relation="at least", num_words=-1)], "num_words must be a non-negative"),
    ([_c("length_constraints:number_words", relation="at least", num_words="5")], "num_words must be a non-negative"),
    ([_c("keywords:existence", keywords=[])], "keywords must be a non-empty list of strings"),
    ([_c("keywords:existence", keywords=["ok", ""])], "keywords must be a non-empty list of strings"),
    ([_c("keywords:forbidden_words", forbidden_words="bad")], "forbidden_words must be a non-empty list"),
])
def test_constraint_errors_on_malformed(constraints, fragment):
    errors = constraint_errors(constraints)
    assert errors, f"{constraints!r} was accepted"
    assert any(fragment in e for e in errors), errors


def test_constraint_errors_reports_each_bad_entry_with_index():
    errors = constraint_errors([
        {"type": "change_case:english_lowercase"},
        {"type": "nope"},
        _c("keywords:existence"),
    ])
    assert len(errors) == 2
    assert errors[0].startswith("constraints[1]")
    assert errors[1].startswith("constraints[2] (keywords:existence)")


# math answers ------------------------------------------------------------------------------

def test_extract_final_answer_takes_last_answer_is():
    text = "First the answer is 3. But wait.\nSo the answer is: 42."
    assert extract_final_answer(text) == Extracted("42", "answer_is")
    assert extract_final_answer("no marker here") is None


def test_extract_prefers_boxed_then_answer_is_then_last_number():
    assert extract_final_answer("The answer is 3, so \\boxed{\\frac{1}{2}} holds") == \
        Extracted("\\frac{1}{2}", "boxed")
    assert extract_final_answer("We add 2 and 5 to get 7 apples") == Extracted("7", "last_number")
    assert extract_final_answer("It costs $1,200 in total") == Extracted("1,200", "last_number")


def test_boxed_latex_fraction_verifies():
    assert verify_answer("Thus \\boxed{\\frac{1}{2}}.", "0.5")[0] is True


def test_a_stuck_verification_is_bounded_and_the_verifier_recovers():
    verifier = MathVerifier(timeout_s=0.01)  # below a worker's start-up: the first call overruns
    with pytest.raises(TimeoutError):
        verifier.verify("42", "42")
    verifier.timeout_s = 60
    assert verifier.verify("42", "42") == (True, "42")  # a fresh worker after the kill
    verifier.close()


def test_verify_answer_correct():
    assert verify_answer("The answer is 42.", "42") == (True, "42")


def test_verify_answer_wrong():
    correct, answer = verify_answer("After some work, the answer is 41.", "42")
    assert correct is False
    assert answer == "41"


def test_verify_answer_no_number_is_none():
    assert verify_answer("I do not know.", "42") == (None, None)


def test_verify_answer_boxed():
    correct, answer = verify_answer("So we get \\boxed{3.5}", "3.5")
    assert correct is True
    assert answer == "3.5"
    assert verify_answer("So we get \\boxed{3.25}", "3.5")[0] is False


def test_verify_answer_equivalent_forms():
    assert verify_answer("The answer is 1/2.", "0.5")[0] is True


def test_verify_answer_unparsable_reference_raises():
    with pytest.raises(ValueError, match="does not parse"):
        verify_answer("The answer is 4.", "")


# score_candidates over lake-shaped frames ------------------------------------------------

def _prompt(pid, task, content, **extra):
    return {"prompt_id": pid, "source": "test", "task": task,
            "messages": [{"role": "user", "content": content}], "run_id": "r0", "created_at": NOW, **extra}


def _cand(cid, pid, text, error=None):
    return {"candidate_id": cid, "prompt_id": pid, "model": "m", "sampling_json": "{}", "sample_index": 0,
            "seed": 1, "text": text, "error": error, "finish_reason": "error" if text is None else "stop",
            "run_id": "r0", "created_at": NOW}


LOWER_AND_SEA = [{"type": "change_case:english_lowercase"}, _c("keywords:existence", keywords=["sea"])]


@pytest.fixture
def frames():
    prompts = pl.from_arrow(schemas.conform("prompts", [
        _prompt("p-math", "math", "What is 6 * 7?", reference_answer="42"),
        _prompt("p-inst", "instruction", "Describe the sea in lowercase.",
                constraints_json=json.dumps(LOWER_AND_SEA)),
        _prompt("p-chat", "chat", "hi"),
    ]))
    candidates = pl.from_arrow(schemas.conform("candidates", [
        _cand("m-right", "p-math", "6 * 7 = 42, so the answer is 42."),
        _cand("m-wrong", "p-math", "The answer is 41."),
        _cand("m-none", "p-math", "I am not sure."),
        _cand("m-fail", "p-math", None, error="engine died"),
        _cand("i-both", "p-inst", "the sea is calm and blue"),
        _cand("i-one", "p-inst", "The Sea is calm."),
        _cand("i-zero", "p-inst", "A calm Ocean."),
        _cand("c-1", "p-chat", "hello"),
        _cand("orphan", "p-missing", "The answer is 42."),
    ]))
    return prompts, candidates


def _by_candidate(table):
    return {row["candidate_id"]: row for row in table.to_pylist()}


def test_math_scorer_scores_math_candidates_only(frames):
    prompts, candidates = frames
    scorer = MathAnswerScorer()
    table = score_candidates(prompts, candidates, [scorer], "run-s")
    assert table.schema == schemas.table("scores").arrow_schema()
    rows = _by_candidate(table)
    assert set(rows) == {"m-right", "m-wrong", "m-none", "m-fail"}
    assert rows["m-right"]["score"] == 1.0 and rows["m-right"]["status"] == "ok"
    assert json.loads(rows["m-right"]["detail_json"]) == {
        "extracted": "42", "method": "answer_is", "reference": "42", "answer": "42"}
    assert rows["m-wrong"]["score"] == 0.0 and rows["m-wrong"]["status"] == "ok"
    assert rows["m-none"]["status"] == "ok" and rows["m-none"]["score"] == 0.0
    assert json.loads(rows["m-none"]["detail_json"])["reason"] == "no final answer found"
    for cid, row in rows.items():
        assert row["score_id"] == ids.score_id(cid, "math_verify", scorer.version)
        assert row["scorer"] == "math_verify" and row["scorer_version"] == scorer.version
        assert row["prompt_id"] == "p-math"
        assert row["run_id"] == "run-s"


def test_candidate_without_text_gets_no_text_status_and_null_score(frames):
    prompts, candidates = frames
    rows = _by_candidate(score_candidates(prompts, candidates, [MathAnswerScorer()], "r"))
    failed = rows["m-fail"]
    assert failed["status"] == "no_text"
    assert failed["score"] is None
    assert json.loads(failed["detail_json"]) == {"reason": "engine died"}


def test_constraint_scorer_fraction_followed(frames):
    prompts, candidates = frames
    rows = _by_candidate(score_candidates(prompts, candidates, [ConstraintScorer()], "r"))
    assert set(rows) == {"i-both", "i-one", "i-zero"}
    assert rows["i-both"]["score"] == 1.0
    assert rows["i-one"]["score"] == 0.5
    assert rows["i-zero"]["score"] == 0.0
    detail = json.loads(rows["i-one"]["detail_json"])
    assert detail == {
        "followed": [False, True], "types": [c["type"] for c in LOWER_AND_SEA], "blank": False,
        "constraints": [
            {"type": "change_case:english_lowercase", "kwargs": {}, "followed": False,
             "measured": {"lower": False}},
            {"type": "keywords:existence", "kwargs": {"keywords": ["sea"]}, "followed": True,
             "measured": {"found": ["sea"]}},
        ]}
    assert json.loads(rows["i-both"]["detail_json"])["constraints"][0]["measured"] == {
        "lower": True, "language": "en"}
    assert all(r["status"] == "ok" and r["scorer"] == "constraints" for r in rows.values())


AUDITED = [
    (_c("length_constraints:number_sentences", relation="less than", num_sentences=2), {"count": 2}),
    (_c("length_constraints:number_words", relation="at least", num_words=5), {"count": 9}),
    (_c("language:response_language", language="en"), {"language": "en"}),
    (_c("keywords:forbidden_words", forbidden_words=["shops", "cars"]), {"found": ["shops"]}),
    (_c("keywords:letter_frequency", letter="w", let_frequency=3, let_relation="less than"),
     {"count": 4}),
    (_c("change_case:capital_word_frequency", capital_relation="at least", capital_frequency=1),
     {"count": 0}),
    (_c("punctuation:has_comma"), {"count": 0}),
]


def test_constraint_scorer_detail_holds_kwargs_and_measured_values():
    text = "We walked down Main St. The shops were closed."
    constraints = [c for c, _ in AUDITED]
    item = ScoreItem("c", "p", "instruction", [], text, {"constraints_json": json.dumps(constraints)})
    [result] = ConstraintScorer().score([item])
    detail = json.loads(json.dumps(result.detail))  # as stored in detail_json
    assert [v["kwargs"] for v in detail["constraints"]] == [c["kwargs"] for c in constraints]
    assert [v["measured"] for v in detail["constraints"]] == [m for _, m in AUDITED]
    assert detail["followed"] == [v["followed"] for v in detail["constraints"]] == [
        False, True, True, False, False, False, False]
    assert result.score == 2 / 7


@pytest.mark.parametrize("blank", ["", " ", "\n\n\t", "\u3000"])
def test_constraint_scorer_blank_response_follows_nothing(blank):
    """IFEval's harness: `response.strip() and check_following(response)`. An empty answer once
    followed 221 of IFEval's 834 instructions here (and every reverse of a failed one)."""
    constraints = [_c("length_constraints:number_words", relation="less than", num_words=10),
                   _c("keywords:not_all_exist", keywords=["sea"]),
                   _c("punctuation:no_comma"), _c("language:response_language", language="en")]
    item = ScoreItem("c", "p", "instruction", [], blank, {"constraints_json": json.dumps(constraints)})
    [result] = ConstraintScorer().score([item])
    assert result.score == 0.0 and result.status == "ok"
    assert result.detail["blank"] is True and result.detail["followed"] == [False] * 4
    assert all(v["measured"] is None for v in result.detail["constraints"])


def test_several_scorers_in_one_call(frames):
    prompts, candidates = frames
    table = score_candidates(prompts, candidates, [MathAnswerScorer(), ConstraintScorer()], "r")
    assert table.num_rows == 7
    assert sorted(set(table.column("scorer").to_pylist())) == ["constraints", "math_verify"]
    assert len(set(table.column("score_id").to_pylist())) == 7


def test_existing_callback_skips_already_scored(frames):
    prompts, candidates = frames
    scorer = MathAnswerScorer()
    done_ids = {ids.score_id("m-right", scorer.name, scorer.version),
                ids.score_id("m-fail", scorer.name, scorer.version)}
    asked: list[list[str]] = []

    def existing(wanted):
        asked.append(list(wanted))
        return {w for w in wanted if w in done_ids}

    table = score_candidates(prompts, candidates, [scorer], "r", existing)
    assert set(table.column("candidate_id").to_pylist()) == {"m-wrong", "m-none"}
    # the callback was asked about every applicable candidate's score id
    assert len(asked) == 1
    assert set(asked[0]) == {ids.score_id(c, "math_verify", scorer.version)
                             for c in ("m-right", "m-wrong", "m-none", "m-fail")}


def test_everything_already_scored_gives_empty_table(frames):
    prompts, candidates = frames
    table = score_candidates(prompts, candidates, [ConstraintScorer()], "r", lambda wanted: set(wanted))
    assert table.num_rows == 0
    assert table.schema == schemas.table("scores").arrow_schema()


def test_no_applicable_candidates_gives_empty_table(frames):
    prompts, candidates = frames
    chat_only = candidates.filter(pl.col("prompt_id") == "p-chat")
    table = score_candidates(prompts, chat_only, [MathAnswerScorer(), ConstraintScorer()], "r")
    assert table.num_rows == 0


def test_scorer_error_on_one_item_does_not_sink_batch():
    prompts = pl.from_arrow(schemas.conform("prompts", [
        _prompt("p-ok", "math", "1+1?", reference_answer="2"),
        _prompt("p-bad", "math", "?", reference_answer="   "),  # reference that does not parse
    ]))
    candidates = pl.from_arrow(schemas.conform("candidates", [
        _cand("ok", "p-ok", "The answer is 2."),
        _cand("bad", "p-bad", "The answer is 2."),
    ]))
    rows = _by_candidate(score_candidates(prompts, candidates, [MathAnswerScorer()], "r"))
    assert rows["ok"]["status"] == "ok" and rows["ok"]["score"] == 1.0
    assert rows["bad"]["status"] == "error" and rows["bad"]["score"] is None
    assert "ValueError" in json.loads(rows["bad"]["detail_json"])["error"]


def test_non_ok_result_never_stores_a_score():
    class Flaky:
        name, version, tasks = "flaky", "0", None

        def score(self, items):
            from curate.score import ScoreResult

            return [ScoreResult(0.7, "error", {"error": "boom"}) for _ in items]

    prompts = pl.from_arrow(schemas.conform("prompts", [_prompt("p", "chat", "hi")]))
    candidates = pl.from_arrow(schemas.conform("candidates", [_cand("c", "p", "hello")]))
    row = score_candidates(prompts, candidates, [Flaky()], "r").to_pylist()[0]
    assert row["status"] == "error"
    assert row["score"] is None
