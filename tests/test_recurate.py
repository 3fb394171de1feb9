"""Re-curation runs: completions the inputs hold, scored, paired, deduplicated and exported without
generating; a rescoring run that adds only scores and pairs; imported and generated candidates
for the same prompts."""

from __future__ import annotations

import json

import datasets
import polars as pl
import pytest

from curate.config import parse_config
from curate.pipeline import Pipeline

# UltraFeedback-shaped rows: `instruction`, completions with model, response and overall_score.
# The math rows' ratings disagree with the answers' correctness in places: the verifier decides.
ROWS = [
    {"instruction": "What is 17 + 25?", "task": "math", "reference_answer": "42", "completions": [
        {"model": "m-a", "response": "17 + 25 = 42. The answer is 42.", "overall_score": 6},
        {"model": "m-b", "response": "17 + 25 = 32. The answer is 32.", "overall_score": 8},
        {"model": "m-c", "response": "Adding the tens and the units gives 42. The answer is 42.", "overall_score": 9}]},
    {"instruction": "What is 9 * 8?", "task": "math", "reference_answer": "72", "completions": [
        {"model": "m-a", "response": "9 * 8 = 72. The answer is 72.", "overall_score": 7},
        {"model": "m-b", "response": "9 * 8 = 81. The answer is 81.", "overall_score": 3}]},
    {"instruction": "Suggest a name for a grey cat.", "completions": [
        {"model": "m-a", "response": "Ash, after the colour of its coat.", "overall_score": 8.5},
        {"model": "m-b", "response": "Cat.", "overall_score": 2},
        {"model": "m-c", "response": "Smokey or Pebble would suit a grey cat.", "overall_score": 7}]},
    {"instruction": "Give one tip for sleeping better.", "completions": [
        {"model": "m-a", "response": "Keep the same bedtime every night, weekends included.", "overall_score": 9},
        {"model": "m-b", "response": "", "overall_score": 1},  # malformed: a reject, the row goes on
        {"model": "m-c", "response": "Sleep.", "overall_score": 3}]},
]
PAIRS = [{"strategy": "margin", "scorer": "imported:overall_score"}, {"strategy": "margin", "scorer": "math_verify"}]


def _values(tmp_path, **extra) -> dict:
    path = tmp_path / "uf.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return {"name": "recurate", "export_path": "export/recurate",
            "inputs": [{"path": str(path), "generate": False, "columns": {"prompt": "instruction"}}],
            "scorers": [{"kind": "math_verify"}], "pairs": list(PAIRS), "dedup": {"semantic": False}, **extra}


def _run(values: dict, tmp_path):
    pipeline = Pipeline(parse_config(values, tmp_path), tmp_path / "data")
    try:
        state = pipeline.run_all()
        tables = {name: pipeline.lake.read(name) for name in ("candidates", "scores", "pairs", "rejects")}
    finally:
        pipeline.close()
    return state, tables


def test_generate_false_pairs_on_ratings_and_verifier_then_a_reward_model_adds_only_scores_and_pairs(
        tmp_path, tiny_reward):
    state, first = _run(_values(tmp_path), tmp_path)
    assert state.counts.get("candidates_new", 0) == 0 and state.counts["candidates_imported_new"] == 10
    assert first["rejects"]["location"].to_list() == ["line 4 completions[1]"]
    pairs = first["pairs"]
    by_scorer = {scorer: group for (scorer,), group in pairs.group_by("scorer")}
    # the chat prompts pair on the imported ratings: the best-rated answer over the worst
    rated = by_scorer["imported:overall_score"].select("chosen", "rejected").rows()
    assert ("Ash, after the colour of its coat.", "Cat.") in rated
    assert ("Keep the same bedtime every night, weekends included.", "Sleep.") in rated
    # every math pair is a right answer over the wrong one, whatever the ratings say
    math = pairs.filter(pl.col("chosen").str.contains("The answer is"))
    assert set(math["rejected"]) == {"17 + 25 = 32. The answer is 32.", "9 * 8 = 81. The answer is 81."}
    assert all("answer is 42." in c or "answer is 72." in c for c in math["chosen"])
    # on 9 * 8 the ratings agree with the verifier: both entries pick one pair, stored once (the first's);
    # on 17 + 25 the worst-rated answer is right too: an imported rating is no verifier, so the rule
    # refuses that rating pair, and math_verify pairs a right answer over the wrong one
    assert ("9 * 8 = 72. The answer is 72.", "9 * 8 = 81. The answer is 81.") in rated
    assert state.counts["pairs_refused_verifier_not_below"] == 1
    assert by_scorer["math_verify"]["rejected"].to_list() == ["17 + 25 = 32. The answer is 32."]
    exported = datasets.load_from_disk(str(tmp_path / "data" / "export" / "recurate"))["train"]
    assert sorted(exported["pair_id"]) == sorted(pairs["pair_id"])

    reward = {"kind": "reward", "model": str(tiny_reward), "name": "tiny", "engine": "transformers",
              "max_model_len": 512}
    values = _values(tmp_path, scorers=[{"kind": "math_verify"}, reward],
                     pairs=[*PAIRS, {"strategy": "margin", "scorer": "reward:tiny"}])
    state, second = _run(values, tmp_path)
    assert second["candidates"].height == first["candidates"].height == 10
    assert state.counts.get("candidates_new", 0) == 0 and state.counts.get("candidates_imported_new", 0) == 0
    assert second["rejects"].height == 1
    new_scores = second["scores"].join(first["scores"], on="score_id", how="anti")
    assert set(new_scores["scorer"]) == {"reward:tiny"} and new_scores.height == 10
    assert state.counts["scores_new"] == 10
    new_pairs = second["pairs"].join(first["pairs"], on="pair_id", how="anti")
    assert new_pairs.height >= 1 and set(new_pairs["scorer"]) == {"reward:tiny"}
    assert state.counts["pairs_new"] == new_pairs.height


@pytest.mark.slow
def test_imported_and_generated_candidates_for_the_same_prompts(tmp_path, tiny_generator):
    """Top up imported completions with samples of our model (the tiny random Llama): both kinds are
    candidates of the same prompts, scored alike; a verifier pairs an imported right answer over a
    generated wrong one, and gt's teacher (an imported model) is paired over our student."""
    values = _values(tmp_path, export_path=None, pairs=[
        {"strategy": "margin", "scorer": "math_verify"},
        {"strategy": "gt", "mode": "teacher_student", "teacher": "m-a", "student": "tiny"}])
    values["inputs"][0]["generate"] = True
    values |= {"generators": [{"model": str(tiny_generator), "name": "tiny", "max_model_len": 512,
                               "kv_cache_memory_bytes": 64 << 20}],
               "sampling": {"n": 2, "temperature": 1.0, "max_tokens": {"default": 12}}}
    state, tables = _run(values, tmp_path)
    candidates = tables["candidates"].with_columns(
        pl.col("sampling_json").str.json_path_match("$.origin").fill_null("generated").alias("origin"))
    per_prompt = candidates.group_by("prompt_id", "origin").len()
    assert per_prompt.filter(pl.col("origin") == "generated")["len"].to_list() == [2] * 4
    assert per_prompt.filter(pl.col("origin") == "imported")["len"].sum() == 10
    assert state.counts["candidates_new"] == 8 and state.counts["candidates_imported_new"] == 10
    math = tables["scores"].filter(pl.col("scorer") == "math_verify")
    assert set(math["candidate_id"]) == set(candidates.filter(pl.col("prompt_id").is_in(math["prompt_id"].implode()))
                                            ["candidate_id"])  # imported and generated scored alike
    origin = dict(candidates.select("candidate_id", "origin").iter_rows())
    sides = {(origin[c], origin[r]) for c, r in tables["pairs"].select("chosen_id", "rejected_id").iter_rows()}
    assert ("imported", "generated") in sides  # a right imported answer over a wrong sample of ours
    teacher = tables["pairs"].filter(pl.col("strategy") == "gt")
    assert teacher.height >= 1 and all("teacher m-a" in reason for reason in teacher["reason"])


# Nectar-shaped rows (berkeley-nest/Nectar): a Human/Assistant transcript prompt, `answers` with
# `rank` (1 = best of the row), a `source` list; one row holds two turns before the last question.
NECTAR = [
    {"prompt": "\n\nHuman: Name a fruit that is yellow.\n\nAssistant:", "answers": [
        {"answer": "A banana is yellow.", "model": "gpt-4", "rank": 1.0},
        {"answer": "Lemons and bananas are yellow fruits.", "model": "gpt-3.5-turbo", "rank": 2.0},
        {"answer": "Blue.", "model": "llama-2-7b-chat", "rank": 3.0}],
     "turns": 1, "num_responses": 3, "source": ["sharegpt"], "good_natured": True},
    {"prompt": "\n\nHuman: I want to bake bread.\n\nAssistant: What kind of bread?\n\n"
               "Human: A simple white loaf. What do I need?\n\nAssistant:", "answers": [
        {"answer": "A car and a map.", "model": "alpaca-13b", "rank": 3.0},
        {"answer": "Flour, water, yeast and salt; an oven and a loaf tin.", "model": "gpt-4", "rank": 1.0},
        {"answer": "Flour and yeast.", "model": "vicuna-13b", "rank": 2.0}],
     "turns": 2, "num_responses": 3, "source": ["anthropic-hh"], "good_natured": True},
]


def test_nectar_rank_one_is_chosen_and_transcript_prompts_become_turns(tmp_path, capsys):
    path = tmp_path / "nectar.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in NECTAR))
    values = {"name": "nectar", "export_path": "export/nectar", "generators": [],
              "inputs": [{"path": str(path), "generate": False}],
              "pairs": [{"strategy": "margin", "scorer": "imported:rank"}], "dedup": {"semantic": False}}
    state, tables = _run(values, tmp_path)
    assert "6 ratings of rank read as lower is better" in capsys.readouterr().out
    candidates = tables["candidates"].select("candidate_id", "text")
    pairs = (tables["pairs"].join(candidates.rename({"candidate_id": "chosen_id", "text": "chosen"}), on="chosen_id")
             .join(candidates.rename({"candidate_id": "rejected_id", "text": "rejected"}), on="rejected_id"))
    assert sorted(zip(pairs["chosen"], pairs["rejected"])) == [
        ("A banana is yellow.", "Blue."), ("Flour, water, yeast and salt; an oven and a loaf tin.", "A car and a map.")]
    ranks = tables["scores"].filter(pl.col("scorer") == "imported:rank")
    details = [json.loads(d) for d in ranks["detail_json"]]
    assert sorted(-s for s in ranks["score"]) == sorted(d["value"] for d in details)
    assert all(d["lower_is_better"] for d in details)
    pipeline = Pipeline(parse_config(values, tmp_path), tmp_path / "data")
    try:
        messages = pipeline.lake.read("prompts")["messages"].to_list()
    finally:
        pipeline.close()
    assert sorted(messages, key=len) == [
        [{"role": "user", "content": "Name a fruit that is yellow."}],
        [{"role": "user", "content": "I want to bake bread."}, {"role": "assistant", "content": "What kind of bread?"},
         {"role": "user", "content": "A simple white loaf. What do I need?"}]]


def test_lower_is_better_can_be_turned_off_and_must_name_ratings(tmp_path):
    from curate.errors import UserError

    path = tmp_path / "nectar.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in NECTAR))
    base = {"name": "n", "generators": [], "pairs": [{"strategy": "margin", "scorer": "imported:rank"}],
            "dedup": {"semantic": False}}
    with pytest.raises(UserError, match="lower_is_better must be a list"):
        parse_config({**base, "inputs": [{"path": str(path), "lower_is_better": "rank"}]}, tmp_path)
    _, tables = _run({**base, "inputs": [{"path": str(path), "generate": False, "lower_is_better": []}]}, tmp_path)
    assert sorted(tables["scores"].filter(pl.col("scorer") == "imported:rank")["score"]) == [1, 1, 2, 2, 3, 3]


def test_a_prompt_repeated_across_ingest_batches_is_counted_once(tmp_path, monkeypatch):
    import curate.steps.ingest

    monkeypatch.setattr(curate.steps.ingest, "INGEST_BATCH_ROWS", 2)
    rows = [NECTAR[0], NECTAR[1], NECTAR[0], NECTAR[1], NECTAR[0]]  # 3 batches, 2 distinct prompts
    path = tmp_path / "nectar.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    state, tables = _run({"name": "n", "generators": [], "inputs": [{"path": str(path), "generate": False}],
                          "pairs": [{"strategy": "margin", "scorer": "imported:rank"}],
                          "dedup": {"semantic": False}}, tmp_path)
    assert state.counts["prompts_read"] == 2 and tables["candidates"].height == 6


def test_a_pair_two_entries_find_is_kept_once_with_both_evidences(tmp_path):
    """UltraFeedback's aspects often agree: margin by helpfulness and by honesty pick the same pair on
    both prompts here, and on the second prompt only helpfulness separates a pair."""
    rows = [{"instruction": "Name a yellow fruit.", "completions": [
                {"model": "a", "response": "A banana.", "annotations": {"helpfulness": 5, "honesty": 5}},
                {"model": "b", "response": "Blue.", "annotations": {"helpfulness": 1, "honesty": 2}}]},
            {"instruction": "Name a red fruit.", "completions": [
                {"model": "a", "response": "A cherry.", "annotations": {"helpfulness": 5, "honesty": 4}},
                {"model": "b", "response": "Pebbles.", "annotations": {"helpfulness": 2, "honesty": 4}}]}]
    path = tmp_path / "uf.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    state, tables = _run({"name": "two", "generators": [], "dedup": {"semantic": False},
                          "inputs": [{"path": str(path), "generate": False, "columns": {"prompt": "instruction"}}],
                          "pairs": [{"strategy": "margin", "scorer": "imported:helpfulness"},
                                    {"strategy": "margin", "scorer": "imported:honesty"}]}, tmp_path)
    pairs = tables["pairs"]
    assert pairs.height == 2 and set(pairs["scorer"]) == {"imported:helpfulness"}
    found = [json.loads(d).get("also_found_by") for d in pairs["details_json"]]
    assert state.counts["pairs_found_again"] == 1 and found.count(None) == 1
    (again,) = [f for f in found if f]
    assert [{k: v for k, v in e.items() if k != "reason"} for e in again] == [
        {"scorer": "imported:honesty", "chosen_score": 5.0, "rejected_score": 2.0, "margin": 3.0}]
    assert "imported:honesty" in again[0]["reason"]
