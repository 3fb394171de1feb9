"""Completions already held by the input rows: each shape imported as candidates, ratings as scores,
malformed completions as rejects of their own, and a re-import that adds nothing."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.config import parse_config
from curate.errors import UserError
from curate.ingest import imported
from curate.ingest.validate import ingest_batches, read_rows
from curate.pairs import rule
from curate.pairs.registry import build_pairs
from curate.pipeline import Pipeline

# UltraFeedback's shape (openbmb/UltraFeedback): `instruction`, `models`, and per completion the
# model, `response`, per-aspect annotations with string ratings, `overall_score`, a critique.
UF_ROWS = [
    {"source": "evol_instruct", "instruction": "Name a primary colour.", "models": ["m-a", "m-b", "m-c"],
     "completions": [
         {"model": "m-a", "response": "Red is a primary colour.", "critique": "Correct.", "overall_score": 8.5,
          "principle": "helpfulness",
          "annotations": {"helpfulness": {"Rating": "5", "Rationale": "right"},
                          "honesty": {"Rating": "N/A", "Rationale": "-"}}},
         {"model": "m-b", "response": "Green, I think.", "overall_score": 4,
          "annotations": {"helpfulness": {"Rating": "2"}}},
         {"model": "m-c", "response": "   ", "overall_score": 1},  # empty: malformed
     ]},
    {"instruction": "Say hello.", "completions": [
        {"model": 7, "response": "Hello!"},  # a model that is no string: malformed
        {"model": "m-a", "overall_score": 3},  # no text: malformed
        "Hi there.",  # a plain string completion (model unnamed)
        {"model": "m-b", "response": "bad \u0000 byte"},  # a NUL character: malformed
        {"model": "m-a", "response": "Hello, friend!", "overall_score": 9},
    ]},
    {"instruction": "", "completions": [{"response": "orphan"}]},  # no prompt: the whole row is a reject
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _ingest(path, source="src", columns=None):
    (batch,) = ingest_batches(read_rows(path), source, "run-1", columns=columns, input_name=str(path))
    return (pl.from_arrow(batch.prompts), pl.from_arrow(batch.rejects), pl.from_arrow(batch.candidates),
            pl.from_arrow(batch.scores))


def _rejects(rejects):
    return dict(zip(rejects["location"], rejects["reason"]))


def test_completion_list_with_ratings_and_malformed_completions(tmp_path):
    path = _jsonl(tmp_path / "uf.jsonl", UF_ROWS)
    prompts, rejects, candidates, scores = _ingest(path, columns={"prompt": "instruction"})
    assert prompts.height == 2  # both prompts stand although some of their completions are refused
    assert _rejects(rejects) == {
        "line 1 completions[2]": "completions[2].response is empty",
        "line 2 completions[0]": "completions[0].model must be a string",
        "line 2 completions[1]": "completions[1] has no text (expected one of text, response, content, "
                                 "completion, output, answer)",
        "line 2 completions[3]": "completions[3].response: NUL character at position 5",
        "line 3": "row needs `messages` (a chat list) or `prompt` (a non-empty string)",
    }
    assert json.loads(rejects.filter(pl.col("location") == "line 1 completions[2]")["raw"][0])["model"] == "m-c"
    by_text = {row["text"]: row for row in candidates.to_dicts()}
    assert set(by_text) == {"Red is a primary colour.", "Green, I think.", "Hi there.", "Hello, friend!"}
    assert by_text["Red is a primary colour."]["model"] == "m-a"
    assert by_text["Hi there."]["model"] == imported.UNNAMED_MODEL
    lineage = json.loads(by_text["Hello, friend!"]["sampling_json"])
    assert lineage == {"origin": "imported", "source": "src", "input": str(path), "location": "line 2",
                       "field": "completions[4]"}
    assert all(row["finish_reason"] is None and row["prompt_tokens"] is None for row in candidates.to_dicts())
    rated = {(by_id, scorer): (score, status) for by_id, scorer, score, status in
             scores.select("candidate_id", "scorer", "score", "status").iter_rows()}
    red = by_text["Red is a primary colour."]["candidate_id"]
    assert rated[(red, "imported:overall_score")] == (8.5, "ok")
    assert rated[(red, "imported:helpfulness")] == (5.0, "ok")
    assert rated[(red, "imported:honesty")] == (None, "unparsed")  # "N/A" is no number
    assert (red, "imported:principle") not in rated and (red, "imported:critique") not in rated
    assert set(scores["scorer_version"]) == {"src"}
    assert scores.filter(pl.col("candidate_id") == by_text["Hi there."]["candidate_id"]).is_empty()


def test_responses_with_parallel_rewards_and_models_from_parquet(tmp_path):
    """RLHFlow's rejection-sampling shape: `responses` strings, `rewards` item by item; `models` names them."""
    rows = [{"prompt": "Add 2 and 2.", "task": "math", "reference_answer": "4",
             "responses": ["4", "5", "4"], "rewards": [0.9, -0.3, 0.7], "models": ["x", "y", "x"]}]
    path = tmp_path / "rlhflow.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    prompts, rejects, candidates, scores = _ingest(path)
    assert prompts["task"].to_list() == ["math"] and rejects.is_empty()
    # the same text by the same model twice is one candidate (content id); x's second answer is index 1
    assert sorted(zip(candidates["model"], candidates["sample_index"], candidates["text"])) == [("x", 0, "4"),
                                                                                               ("y", 0, "5")]
    assert sorted(scores.filter(pl.col("scorer") == "imported:rewards")["score"].to_list()) == [-0.3, 0.9]


def test_binarized_pairs(tmp_path):
    h4 = {"prompt": "What is the capital of France?", "prompt_id": "abc",
          "chosen": [{"role": "user", "content": "What is the capital of France?"},
                     {"role": "assistant", "content": "Paris."}],
          "rejected": [{"role": "user", "content": "What is the capital of France?"},
                       {"role": "assistant", "content": "Lyon."}],
          "messages": [{"role": "user", "content": "What is the capital of France?"},
                       {"role": "assistant", "content": "Paris."}],
          "score_chosen": 9.0, "score_rejected": 3.0}
    argilla = {"prompt": "Name a fruit.", "chosen": "An apple.", "rejected": "A chair.",
               "chosen-rating": 5, "rejected-rating": 1, "chosen-model": "big", "rejected-model": "small"}
    diverging = {"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                 "rejected": [{"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Later."}]}
    bad_side = {"prompt": "Count to three.", "chosen": "1, 2, 3.", "rejected": ["not", "messages"]}
    prompts, rejects, candidates, scores = _ingest(_jsonl(tmp_path / "bin.jsonl", [h4, argilla, diverging, bad_side]))
    assert sorted(m[-1]["content"] for m in prompts["messages"].to_list()) == [
        "Count to three.", "Hi", "Name a fruit.", "What is the capital of France?"]
    assert _rejects(rejects) == {
        "line 3 rejected": "rejected: its conversation before the final reply differs from the chosen's",
        "line 4 rejected": "rejected must be a non-empty list of messages"}
    facts = {row["text"]: row for row in candidates.to_dicts()}
    assert (facts["An apple."]["model"], facts["A chair."]["model"]) == ("big", "small")
    assert json.loads(facts["Lyon."]["sampling_json"])["field"] == "rejected"
    score = {(c, s): v for c, s, v in scores.select("candidate_id", "scorer", "score").iter_rows()}
    paris, lyon = facts["Paris."]["candidate_id"], facts["Lyon."]["candidate_id"]
    assert (score[(paris, "imported:score")], score[(lyon, "imported:score")]) == (9.0, 3.0)
    assert (score[(paris, "imported:preference")], score[(lyon, "imported:preference")]) == (1.0, 0.0)
    assert score[(facts["An apple."]["candidate_id"], "imported:rating")] == 5.0
    # one side only: no preference, the other side's reject says why
    assert (facts["1, 2, 3."]["candidate_id"], "imported:preference") not in score


HH = ("\n\nHuman: I want to bake bread.\n\nAssistant: What kind?\n\nHuman: Sourdough.\n\nAssistant: ")


def test_hh_rlhf_transcripts(tmp_path):
    rows = [
        {"chosen": HH + "Start with a starter: flour and water, fed daily.", "rejected": HH + "Buy some."},
        {"chosen": HH + "   ", "rejected": HH + "Knead it."},  # an empty final reply: malformed
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye", "rejected": "\n\nHuman: Hi"},  # no reply
    ]
    prompts, rejects, candidates, scores = _ingest(_jsonl(tmp_path / "hh.jsonl", rows))
    assert prompts.height == 1  # both rows share the conversation: one prompt
    assert prompts["messages"][0].to_list() == [
        {"role": "user", "content": "I want to bake bread."}, {"role": "assistant", "content": "What kind?"},
        {"role": "user", "content": "Sourdough."}]
    assert _rejects(rejects) == {
        "line 2 chosen": "chosen (final Assistant turn) is empty",
        "line 3": "chosen: the transcript does not end with an Assistant turn"}
    assert sorted(candidates["text"]) == ["Buy some.", "Knead it.", "Start with a starter: flour and water, fed daily."]
    preference = dict(scores.filter(pl.col("scorer") == "imported:preference")
                      .join(candidates, on="candidate_id").select("text", "score").iter_rows())
    assert preference == {"Start with a starter: flour and water, fed daily.": 1.0, "Buy some.": 0.0}



def test_hh_rlhf_from_a_hugging_face_dataset_directory(tmp_path):
    import datasets

    rows = {"chosen": [HH + "Feed a starter for a week first."], "rejected": [HH + "Use yeast."]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "hh"))
    prompts, rejects, candidates, _ = _ingest(tmp_path / "hh")
    assert prompts.height == 1 and rejects.is_empty()
    lineage = [json.loads(s) for s in candidates.sort("text")["sampling_json"]]
    assert [(x["location"], x["field"]) for x in lineage] == [("train row 1", "chosen"), ("train row 1", "rejected")]


def test_column_mapping(tmp_path):
    rows = [{"question_text": "Pick a number.", "outputs": [{"answer": "Seven.", "judge": 6}, {"answer": "Two."}]}]
    path = _jsonl(tmp_path / "mapped.jsonl", rows)
    prompts, rejects, candidates, scores = _ingest(
        path, columns=imported.check_columns({"prompt": "question_text", "completions": "outputs", "text": "answer"}))
    assert rejects.is_empty() and prompts["messages"][0][0]["content"] == "Pick a number."
    assert sorted(candidates["text"]) == ["Seven.", "Two."]
    assert scores["scorer"].to_list() == ["imported:judge"]
    with pytest.raises(UserError, match=r"inputs.0.columns: unknown field\(s\) \['promt'\]"):
        parse_config({"inputs": [{"path": "x.jsonl", "columns": {"promt": "instruction"}}]}, tmp_path)


def test_an_imported_rating_is_never_a_verifier():
    """A rating field named like a verifier is `imported:math_verify`: the pairing rule does not hold
    rejected answers to it, and a margin strategy on it pairs like on any scorer."""
    now = pl.datetime(2026, 1, 1, time_zone="UTC")
    prompts = pl.DataFrame({"prompt_id": ["p"], "task": ["math"],
                            "messages": [[{"role": "user", "content": "1+1?"}]]})
    candidates = pl.DataFrame({"candidate_id": ["a", "b"], "prompt_id": ["p", "p"], "text": ["2", "3"],
                               "finish_reason": [None, None]}, schema_overrides={"finish_reason": pl.Utf8})
    scores = pl.DataFrame({"score_id": ["s1", "s2"], "candidate_id": ["a", "b"], "prompt_id": ["p", "p"],
                           "scorer": ["imported:math_verify"] * 2, "scorer_version": ["src"] * 2,
                           "score": [1.0, 0.0], "status": ["ok", "ok"], "detail_json": [None, None],
                           "run_id": ["r", "r"]}).with_columns(now.alias("created_at"))
    facts = rule.candidate_facts(prompts, candidates, scores)
    assert facts["verifier"].to_list() == [None, None]
    pairs = build_pairs("margin", prompts, candidates, scores, {"scorer": "imported:math_verify"}, "r")
    assert pairs.select("chosen", "rejected").row(0) == ("2", "3")


def test_reimport_adds_nothing(tmp_path):
    path = _jsonl(tmp_path / "uf.jsonl", UF_ROWS)
    config = parse_config({"generators": [], "inputs": [{"path": str(path), "generate": False,
                                                         "columns": {"prompt": "instruction"}}]}, tmp_path)
    counts = []
    for _ in range(2):
        pipeline = Pipeline(config, tmp_path / "data")
        try:
            counts.append(pipeline.run_all().counts)
        finally:
            pipeline.close()
    first, second = counts
    assert (first["prompts_new"], first["candidates_imported_new"], first["rejects_new"]) == (2, 4, 5)
    assert first["scores_imported_new"] == 6 and first["scores_new"] == 4  # ratings; the quality gates
    assert second["candidates_imported"] == 4 and second["prompts_read"] == 2
    assert all(second.get(key, 0) == 0 for key in ("prompts_new", "candidates_imported_new", "rejects_new",
                                                   "scores_imported_new", "scores_new", "candidates_new"))



@pytest.mark.parametrize("name, prompts, candidates, rejects", [("ultrafeedback", 6, 23, 1), ("binarized", 8, 15, 1)])
def test_the_readme_examples_import_what_the_readme_says(name, prompts, candidates, rejects):
    from pathlib import Path

    from curate.config import load_config

    config = load_config(Path(__file__).resolve().parent.parent / "data" / "examples" / f"{name}.toml")
    (spec,) = config.inputs
    assert not config.generators or not spec.generate  # nothing is generated
    (batch,) = ingest_batches(read_rows(spec.path), spec.path.stem, "r", columns=spec.columns)
    assert (batch.prompts.num_rows, batch.candidates.num_rows, batch.rejects.num_rows) == (prompts, candidates,
                                                                                           rejects)


def test_identical_replies_and_labels_against_their_scores_are_counted_rejects(tmp_path):
    """Binarized and HH rows as the public sets have them: a chosen whose text is the rejected's
    (NFD against NFC here), an HH pair with the same last reply, and a row whose own scores rank the
    rejected higher than its label does."""
    rows = [
        {"prompt": "Spell cafe with its accent.", "chosen": "caf\u00e9", "rejected": "cafe\u0301 ",
         "score_chosen": 8.0, "score_rejected": 8.0},
        {"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi?\n\nAssistant: Hello!"},
        {"prompt": "Name a prime.", "chosen": "Nine.", "rejected": "Seven.", "score_chosen": 3.0,
         "score_rejected": 7.0},
    ]
    prompts, rejects, candidates, scores = _ingest(_jsonl(tmp_path / "b.jsonl", rows))
    reasons = _rejects(rejects)
    assert prompts.height == 3 and candidates.height == 1 + 1 + 2
    assert reasons["line 1 rejected"].startswith("rejected: the same text as the chosen")
    assert reasons["line 2 rejected"].startswith("rejected: the same text as the chosen")
    assert reasons["line 3 preference"] == ("the label contradicts the row's score: score_chosen 3 < score_rejected 7; "
                                            "rating `preference` not imported")
    assert set(scores["scorer"]) == {"imported:score"} and scores.height == 3  # line 1's chosen, line 3's two
