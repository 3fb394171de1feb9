"""LLM judges: strict parsing, retries, and position-bias handling through the real vLLM engine."""

from __future__ import annotations

import pytest

from curate.score import ScoreItem
from curate.score.judge import JudgeSettings, PairwiseJudge, PointwiseJudge, parse_rating, parse_verdict


@pytest.mark.parametrize("text,expected", [
    ("The answer is clear.\nRating: 7", 7.0),
    ("Rating: **9**", 9.0),
    ("rating = 3.5", 3.5),
    ("Rating: 7\nOn reflection, Rating: 7", 7.0),
    ("Rating: 7 ... no wait, Rating: 8", None),  # two different ratings: not a verdict
    ("Rating: 11", None),
    ("Rating: 0", None),
    ("I would give it a seven.", None),
    ("", None),
])
def test_parse_rating_is_strict(text, expected):
    assert parse_rating(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("[[A]]", "A"), ("After thinking, [[B]].", "B"), ("[[tie]]", "tie"), ("A", "A"), (" b. ", "B"),
    ("[[A]] ... actually [[B]]", None), ("Answer A is better", None), ("", None), ("AAAA", None),
])
def test_parse_verdict_is_strict(text, expected):
    assert parse_verdict(text) == expected


def _backend(path):
    from curate.generate.vllm_backend import EngineSettings, VLLMBackend

    return VLLMBackend(EngineSettings(str(path), dtype="float32", max_model_len=1024,
                                      kv_cache_memory_bytes=64 << 20), label=path.name)


ITEMS = [ScoreItem(f"c{i}", "p", "chat", [{"role": "user", "content": "Name a colour."}], text, {})
         for i, text in enumerate(["Blue.", "Green is a colour.", "I like turtles."])]


@pytest.mark.slow
def test_judge_that_always_answers_a_produces_ties_not_wins(scripted_model):
    judge = PairwiseJudge(_backend(scripted_model("A")), JudgeSettings(max_tokens=4))
    verdicts = judge.compare([(item.messages, ITEMS[0].text, item.text) for item in ITEMS[1:]])
    assert [v.winner for v in verdicts] == ["tie", "tie"]
    assert all(v.first_order == "a" and v.second_order == "b" for v in verdicts)


@pytest.mark.slow
def test_consistent_judge_verdict_survives_both_orders(scripted_model):
    judge = PairwiseJudge(_backend(scripted_model("[[tie]]")), JudgeSettings(max_tokens=8))
    (verdict,) = judge.compare([(ITEMS[0].messages, "x", "y")])
    assert verdict.winner == "tie" and verdict.first_order == verdict.second_order == "tie"


@pytest.mark.slow
def test_pointwise_ratings_and_unparsed_verdicts(scripted_model):
    rated = PointwiseJudge(_backend(scripted_model("Rating: 7")), "seven", ["helpfulness", "honesty"],
                           JudgeSettings(max_tokens=8))
    results = rated.score(ITEMS)
    assert [r.score for r in results] == [7.0, 7.0, 7.0]
    assert results[0].detail["ratings"] == {"helpfulness": 7.0, "honesty": 7.0}

    mute = PointwiseJudge(_backend(scripted_model("A")), "mute", settings=JudgeSettings(max_tokens=4, max_retries=2))
    results = mute.score(ITEMS)
    assert all(r.status == "unparsed" and r.score is None for r in results)
    assert results[0].detail["attempts"] == {"helpfulness": 3}  # first ask + 2 retries
    assert results[0].detail["raw"]["helpfulness"] == "A"
    assert mute.name == "judge:mute" and mute.backend.fingerprint in mute.version


@pytest.mark.slow
def test_reply_prefix_is_part_of_what_is_parsed(scripted_model):
    # This model says " 7" after a ":" (and nothing useful after the template's "\n"): only with
    # "Rating:" forced as the reply's start does it give a verdict, parsed as "Rating:" + " 7".
    model = _backend(scripted_model(" 7", after=":"))
    prefixed = PointwiseJudge(model, "prefixed", settings=JudgeSettings(max_tokens=4, reply_prefix="Rating:"))
    plain = PointwiseJudge(model, "plain", settings=JudgeSettings(max_tokens=4, max_retries=0))
    assert prefixed.version != plain.version
    assert [r.score for r in prefixed.score(ITEMS[:2])] == [7.0, 7.0]
    assert [r.status for r in plain.score(ITEMS[:1])] == ["unparsed"]
