"""Margin pairs: best vs worst candidate of a prompt by one scorer."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from curate import ids, schemas
from curate.dedup import pair_dedup_key
from curate.pairs import STRATEGIES, build_pairs

NOW = datetime(2024, 7, 8, tzinfo=timezone.utc)


def prompts_frame(*pids):
    return pl.from_arrow(schemas.conform("prompts", [
        {"prompt_id": pid, "source": "s", "task": "math",
         "messages": [{"role": "user", "content": f"question {pid}"}], "reference_answer": "1",
         "run_id": "r0", "created_at": NOW}
        for pid in pids
    ]))


def candidates_frame(rows):
    """rows: (candidate_id, prompt_id, text)."""
    return pl.from_arrow(schemas.conform("candidates", [
        {"candidate_id": cid, "prompt_id": pid, "model": "m", "sampling_json": "{}", "sample_index": i,
         "seed": i, "text": text, "run_id": "r0", "created_at": NOW}
        for i, (cid, pid, text) in enumerate(rows)
    ]))


def score_row(cid, pid, score, scorer="math_verify", status="ok", version="1"):
    return {"score_id": ids.score_id(cid, scorer, version), "candidate_id": cid, "prompt_id": pid,
            "scorer": scorer, "scorer_version": version, "score": score if status == "ok" else None,
            "status": status, "run_id": "r0", "created_at": NOW}


def scores_frame(rows):
    """rows: (candidate_id, prompt_id, score[, scorer[, status[, version]]])."""
    return pl.from_arrow(schemas.conform("scores", [score_row(*row) for row in rows]))


def build(prompts, candidates, scores, config=None):
    return build_pairs("margin", prompts, candidates, scores, config or {}, run_id="run-x")


def test_margin_is_registered():
    build_pairs("margin", prompts_frame(), candidates_frame([]), scores_frame([]), {}, "r")
    assert "margin" in STRATEGIES
    with pytest.raises(KeyError, match="unknown pair strategy"):
        build_pairs("nope", prompts_frame(), candidates_frame([]), scores_frame([]), {}, "r")


def test_best_vs_worst_chosen():
    prompts = prompts_frame("p1")
    candidates = candidates_frame([("a", "p1", "text a"), ("b", "p1", "text b"), ("c", "p1", "text c")])
    scores = scores_frame([("a", "p1", 0.5), ("b", "p1", 1.0), ("c", "p1", 0.25)])
    pairs = build(prompts, candidates, scores)
    assert pairs.height == 1
    row = pairs.to_dicts()[0]
    assert (row["chosen_id"], row["rejected_id"]) == ("b", "c")
    assert (row["chosen"], row["rejected"]) == ("text b", "text c")
    assert (row["chosen_score"], row["rejected_score"]) == (1.0, 0.25)
    assert row["margin"] == row["chosen_score"] - row["rejected_score"] == 0.75
    assert row["prompt"] == [{"role": "user", "content": "question p1"}]
    assert row["strategy"] == "margin" and row["scorer"] == "math_verify"
    assert row["run_id"] == "run-x"
    assert row["pair_id"] == ids.pair_id("margin", "b", "c", "p1")
    assert row["dedup_key"] == pair_dedup_key(row["prompt"], "text b", "text c")
    assert "math_verify" in row["reason"]


def test_output_matches_pairs_schema():
    pairs = build(prompts_frame("p1"), candidates_frame([("a", "p1", "x"), ("b", "p1", "y")]),
                  scores_frame([("a", "p1", 0.0), ("b", "p1", 1.0)]))
    assert pairs.to_arrow().schema.names == schemas.table("pairs").column_names
    # conform accepts it as is: no null in a required column
    schemas.conform("pairs", pairs.to_arrow())


def test_all_tied_prompt_gives_no_pair():
    candidates = candidates_frame([("a", "p1", "x"), ("b", "p1", "y"), ("c", "p1", "z")])
    scores = scores_frame([("a", "p1", 1.0), ("b", "p1", 1.0), ("c", "p1", 1.0)])
    assert build(prompts_frame("p1"), candidates, scores).height == 0


def test_single_candidate_gives_no_pair():
    pairs = build(prompts_frame("p1"), candidates_frame([("a", "p1", "x")]), scores_frame([("a", "p1", 1.0)]))
    assert pairs.height == 0


def test_min_margin_filters():
    prompts = prompts_frame("p-small", "p-big", "p-exact")
    candidates = candidates_frame([
        ("s1", "p-small", "x"), ("s2", "p-small", "y"),
        ("b1", "p-big", "x"), ("b2", "p-big", "y"),
        ("e1", "p-exact", "x"), ("e2", "p-exact", "y"),
    ])
    scores = scores_frame([
        ("s1", "p-small", 0.5), ("s2", "p-small", 0.25),
        ("b1", "p-big", 1.0), ("b2", "p-big", 0.0),
        ("e1", "p-exact", 0.75), ("e2", "p-exact", 0.25),
    ])
    kept = build(prompts, candidates, scores, {"min_margin": 0.5})
    assert sorted(kept["prompt_id"].to_list()) == ["p-big", "p-exact"]  # margin >= min_margin
    everything = build(prompts, candidates, scores)
    assert everything.height == 3
    assert everything["prompt_id"].to_list() == sorted(everything["prompt_id"].to_list())


def test_non_ok_and_other_scorer_scores_ignored():
    candidates = candidates_frame([("a", "p1", "x"), ("b", "p1", "y"), ("c", "p1", "z"), ("d", "p1", "w")])
    scores = scores_frame([
        ("a", "p1", 0.5),
        ("b", "p1", 0.25),
        ("c", "p1", 1.0, "math_verify", "error"),      # error: not a score
        ("d", "p1", 0.0, "reward:rm"),                  # another scorer
        ("b", "p1", 9.0, "reward:rm"),
    ])
    row = build(prompts_frame("p1"), candidates, scores).to_dicts()[0]
    assert (row["chosen_id"], row["rejected_id"]) == ("a", "b")
    assert row["margin"] == 0.25


def test_other_scorer_selected_by_config():
    candidates = candidates_frame([("a", "p1", "x"), ("b", "p1", "y")])
    scores = scores_frame([("a", "p1", 1.0), ("b", "p1", 0.0),
                           ("a", "p1", -2.0, "reward:rm"), ("b", "p1", 3.0, "reward:rm")])
    row = build(prompts_frame("p1"), candidates, scores, {"scorer": "reward:rm"}).to_dicts()[0]
    assert (row["chosen_id"], row["rejected_id"], row["margin"]) == ("b", "a", 5.0)
    assert row["scorer"] == "reward:rm"


def test_candidate_without_text_ignored():
    candidates = candidates_frame([("a", "p1", "x"), ("b", "p1", None), ("c", "p1", "z")])
    scores = scores_frame([("a", "p1", 1.0), ("b", "p1", 0.0), ("c", "p1", 0.5)])
    row = build(prompts_frame("p1"), candidates, scores).to_dicts()[0]
    assert (row["chosen_id"], row["rejected_id"]) == ("a", "c")


def test_tie_break_by_smallest_candidate_id():
    candidates = candidates_frame([("zz", "p1", "1"), ("bb", "p1", "2"), ("mm", "p1", "3"),
                                   ("yy", "p1", "4"), ("cc", "p1", "5")])
    scores = scores_frame([("zz", "p1", 1.0), ("bb", "p1", 1.0), ("mm", "p1", 1.0),
                           ("yy", "p1", 0.0), ("cc", "p1", 0.0)])
    row = build(prompts_frame("p1"), candidates, scores).to_dicts()[0]
    assert (row["chosen_id"], row["rejected_id"]) == ("bb", "cc")
    # the input order does not matter
    again = build(prompts_frame("p1"), candidates.reverse(), scores.reverse()).to_dicts()[0]
    assert (again["chosen_id"], again["rejected_id"]) == ("bb", "cc")
    assert again["pair_id"] == row["pair_id"]


def test_chosen_differs_from_rejected_across_many_prompts():
    pids = [f"p{i}" for i in range(8)]
    cands, scs = [], []
    for i, pid in enumerate(pids):
        for j in range(i % 4 + 1):
            cid = f"{pid}-c{j}"
            cands.append((cid, pid, f"text {cid}"))
            scs.append((cid, pid, float((i + 2 * j) % 3) / 2))
    by_prompt: dict[str, list[float]] = {}
    for _, pid, value in scs:
        by_prompt.setdefault(pid, []).append(value)
    expected = sorted(pid for pid, values in by_prompt.items() if max(values) > min(values))
    pairs = build(prompts_frame(*pids), candidates_frame(cands), scores_frame(scs))
    assert 0 < len(expected) < len(pids)
    assert pairs["prompt_id"].to_list() == expected
    assert (pairs["chosen_id"] != pairs["rejected_id"]).all()
    assert (pairs["margin"] > 0).all()
    assert pairs["prompt_id"].n_unique() == pairs.height  # at most one margin pair per prompt


def test_params_json_contains_scorer_and_min_margin():
    pairs = build(prompts_frame("p1"), candidates_frame([("a", "p1", "x"), ("b", "p1", "y")]),
                  scores_frame([("a", "p1", 0.0), ("b", "p1", 1.0)]), {"min_margin": 0.5})
    params = json.loads(pairs["params_json"][0])
    assert params["scorer"] == "math_verify"
    assert params["min_margin"] == 0.5


def test_prompt_missing_from_prompts_gives_no_pair():
    candidates = candidates_frame([("a", "p1", "x"), ("b", "p1", "y")])
    scores = scores_frame([("a", "p1", 0.0), ("b", "p1", 1.0)])
    assert build(prompts_frame("other"), candidates, scores).height == 0


def test_two_scorer_versions_of_one_candidate_never_pair_with_itself():
    candidates = candidates_frame([("a", "p1", "x")])
    scores = scores_frame([("a", "p1", 0.0, "math_verify", "ok", "1"),
                           ("a", "p1", 1.0, "math_verify", "ok", "2")])
    pairs = build(prompts_frame("p1"), candidates, scores)
    assert (pairs["chosen_id"] != pairs["rejected_id"]).all()
    assert pairs.height == 0


def test_scorer_version_config_uses_only_that_version():
    candidates = candidates_frame([("a", "p1", "x"), ("b", "p1", "y")])
    scores = scores_frame([
        ("a", "p1", 0.0, "math_verify", "ok", "1"), ("b", "p1", 1.0, "math_verify", "ok", "1"),
        ("a", "p1", 1.0, "math_verify", "ok", "2"), ("b", "p1", 0.0, "math_verify", "ok", "2"),
    ])
    pairs = build(prompts_frame("p1"), candidates, scores, {"scorer_version": "2"})
    assert pairs.height == 1
    row = pairs.to_dicts()[0]
    assert (row["chosen_id"], row["rejected_id"]) == ("a", "b")


def test_z_scores_standardise_per_scorer_and_margin_can_use_them():
    import polars as pl

    from curate.score import with_z_scores

    scores = pl.DataFrame({
        "scorer": ["rm"] * 3 + ["flat"] * 2, "scorer_version": ["1"] * 5,
        "status": ["ok", "ok", "ok", "ok", "ok"], "score": [1.0, 2.0, 3.0, 5.0, 5.0],
    })
    z = with_z_scores(scores)["score_z"].to_list()
    assert z[:3] == pytest.approx([-1.0, 0.0, 1.0])
    assert z[3:] == [None, None]  # a constant scorer has no z-scores


def test_margin_on_z_scores_is_in_standard_deviations():
    prompts = prompts_frame("p1", "p2")
    candidates = candidates_frame([("a", "p1", "a"), ("b", "p1", "b"), ("c", "p2", "c"), ("d", "p2", "d")])
    scores = scores_frame([("a", "p1", 10.0, "rm"), ("b", "p1", 20.0, "rm"),
                           ("c", "p2", 30.0, "rm"), ("d", "p2", 40.0, "rm")])
    raw = build(prompts, candidates, scores, {"scorer": "rm", "min_margin": 5})
    z = build(prompts, candidates, scores, {"scorer": "rm", "min_margin": 0.5, "normalise": "z"})
    assert raw["margin"].to_list() == [10.0, 10.0]
    std = pl.Series([10.0, 20.0, 30.0, 40.0]).std()
    assert z["margin"].to_list() == pytest.approx([10.0 / std] * 2)
    assert z["chosen_id"].to_list() == raw["chosen_id"].to_list() == ["b", "d"]
    with pytest.raises(ValueError, match="normalise"):
        build(prompts, candidates, scores, {"scorer": "rm", "normalise": "rank"})
