"""Margin pairs: best vs worst candidate of a prompt by one scorer."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from curate import ids
from curate.dedup import pair_dedup_key
from curate.lake import schemas
from curate.pairs.registry import STRATEGIES, build_pairs

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
    with pytest.raises(ValueError, match="unknown pair strategy"):
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
    scores = scores_frame([("a", "p1", 0.0), ("b", "p1", 1.0),
                           ("a", "p1", -2.0, "reward:rm"), ("b", "p1", 3.0, "reward:rm")])
    row = build(prompts_frame("p1"), candidates, scores, {"scorer": "reward:rm"}).to_dicts()[0]
    assert (row["chosen_id"], row["rejected_id"], row["margin"]) == ("b", "a", 5.0)
    assert row["scorer"] == "reward:rm"
    # the math prompt's verifier scores the reward's rejected higher: the pairing rule refuses it
    disagree = scores_frame([("a", "p1", 1.0), ("b", "p1", 0.0),
                             ("a", "p1", -2.0, "reward:rm"), ("b", "p1", 3.0, "reward:rm")])
    assert build(prompts_frame("p1"), candidates, disagree, {"scorer": "reward:rm"}).height == 0


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


# --- options: pairing, required verifier, dual margin, MADPO weights, length control ------------

def one_prompt(*rows, pid="p1"):
    """rows: (candidate_id, score[, text]) of one prompt -> (prompts, candidates, scores)."""
    candidates = candidates_frame([(r[0], pid, r[2] if len(r) > 2 else f"text {r[0]}") for r in rows])
    return prompts_frame(pid), candidates, scores_frame([(r[0], pid, r[1]) for r in rows])


def chosen_rejected(pairs):
    return [(r["chosen_id"], r["rejected_id"]) for r in pairs.sort("prompt_id", "chosen_id", "rejected_id").to_dicts()]


def details(pairs):
    return [json.loads(d) for d in pairs["details_json"]]


@pytest.mark.parametrize("config, key", [
    ({"pairng": "best_vs_worst"}, "pairng"),
    ({"implicit_margin": {"policy": "lp:pol", "reference": "lp:ref", "betta": 0.1}}, "betta"),
    ({"madpo": {"scael": 1.0}}, "scael"),
    ({"pairing": "best_vs_worst", "seed": 3}, "seed"),                     # no effect without best_vs_random
    ({"max_pairs_per_prompt": 3}, "max_pairs_per_prompt"),                 # no effect without all_pairs
    ({"required_verifier_min": 0.5}, "required_verifier_min"),            # no effect without a verifier
    ({"dual_combine": "product"}, "dual_combine"),                        # no effect without implicit_margin
    ({"pairing": "best_of_three"}, "pairing"),
    ({"dual_normalise": "zscore", "implicit_margin": {"policy": "a", "reference": "b"}}, "dual_normalise"),
    ({"length_control": "shortest"}, "length_control"),
    ({"keep_top_fraction": 0.0}, "keep_top_fraction"),
    ({"keep_top_fraction": 1.5}, "keep_top_fraction"),
    ({"min_margin": "0.5"}, "min_margin"),
    ({"max_pairs_per_prompt": 0, "pairing": "all_pairs_above_margin"}, "max_pairs_per_prompt"),
    ({"implicit_margin": {"policy": "lp:pol"}}, "reference"),
    ({"pairing": "all_pairs_above_margin", "length_control": "closest"}, "closest"),
])
def test_bad_config_raises_value_error_naming_the_key(config, key):
    prompts, candidates, scores = one_prompt(("a", 1.0), ("b", 0.0))
    with pytest.raises(ValueError, match=key):
        build(prompts, candidates, scores, config)


def test_params_json_records_every_option_with_defaults():
    prompts, candidates, scores = one_prompt(("a", 1.0), ("b", 0.0))
    for name, lp in (("lp:pol", -1.0), ("lp:ref", -2.0)):
        scores = pl.concat([scores, scores_frame([("a", "p1", lp, name), ("b", "p1", lp, name)])])
    pairs = build(prompts, candidates, scores, {"implicit_margin": {"policy": "lp:pol", "reference": "lp:ref"},
                                                "madpo": True})
    params = json.loads(pairs["params_json"][0])
    assert params["pairing"] == "best_vs_worst" and params["length_control"] == "none"
    assert params["implicit_margin"] == {"policy": "lp:pol", "reference": "lp:ref", "beta": 0.1}
    assert params["madpo"] == {"scale": 1.0}
    assert params["dual_normalise"] == "minmax" and params["dual_combine"] == "sum"
    assert params["keep_top_fraction"] == 1.0 and params["length_penalty"] == 0.0
    assert params["required_verifier"] is None and params["max_pairs_per_prompt"] == 8


# best_vs_random: best a; e ties a (never a pair); pool at min_margin 0.5 is b (exactly 0.5), c, d.
RANDOM_ROWS = (("a", 1.0), ("e", 1.0), ("b", 0.5), ("c", 0.25), ("d", 0.0), ("f", 0.75))


@pytest.mark.parametrize("seed, rejected", [(0, "c"), (1, "b"), (2, "d")])
def test_best_vs_random_draws_deterministically_from_the_pool(seed, rejected):
    prompts, candidates, scores = one_prompt(*RANDOM_ROWS)
    config = {"pairing": "best_vs_random", "min_margin": 0.5, "seed": seed}
    pairs = build(prompts, candidates, scores, config)
    assert chosen_rejected(pairs) == [("a", rejected)]  # sorted pool [b, c, d][sha256("p1:seed") % 3]
    again = build(prompts, candidates.reverse(), scores.reverse(), config)
    assert again["pair_id"].to_list() == pairs["pair_id"].to_list()
    assert details(pairs)[0]["pool_size"] == 3
    assert pairs["reason"][0].startswith(f"best vs random (seed {seed}, one of 3 at least 0.5 below)")


def test_best_vs_random_seed_changes_the_draw_and_stays_in_the_pool():
    prompts, candidates, scores = one_prompt(*RANDOM_ROWS)
    drawn = {build(prompts, candidates, scores, {"pairing": "best_vs_random", "min_margin": 0.5, "seed": s})
             ["rejected_id"][0] for s in range(12)}
    assert drawn == {"b", "c", "d"}
    default = build(prompts, candidates, scores, {"pairing": "best_vs_random", "min_margin": 0.5})
    assert default["rejected_id"][0] == "c"  # seed 0


def test_best_vs_random_edge_cases():
    random = {"pairing": "best_vs_random"}
    assert build(*one_prompt(("a", 1.0), ("b", 1.0), ("c", 1.0)), random).height == 0  # all tied
    assert build(*one_prompt(("a", 1.0)), random).height == 0  # single candidate
    assert build(*one_prompt(("a", 1.0), ("b", 0.5)), {**random, "min_margin": 0.75}).height == 0
    assert chosen_rejected(build(*one_prompt(("a", 1.0), ("b", 0.5)), {**random, "min_margin": 0.5})) == [("a", "b")]
    # with one candidate below the best, every seed draws it
    for seed in range(5):
        pairs = build(*one_prompt(("a", 1.0), ("e", 1.0), ("b", 0.0)), {**random, "seed": seed})
        assert chosen_rejected(pairs) == [("a", "b")]


# all_pairs_above_margin: c and d tie (never a pair).
ALL_ROWS = (("a", 1.0), ("b", 0.75), ("c", 0.5), ("d", 0.5), ("e", 0.0))


def test_all_pairs_above_margin_exact_pairs_and_default_cap():
    prompts, candidates, scores = one_prompt(*ALL_ROWS)
    pairs = build(prompts, candidates, scores, {"pairing": "all_pairs_above_margin", "min_margin": 0.25})
    # nine ordered pairs have a margin >= 0.25; the default cap of 8 drops the last of the 0.25 ties (b, d)
    assert sorted(chosen_rejected(pairs)) == sorted([("a", "e"), ("b", "e"), ("a", "c"), ("a", "d"), ("c", "e"),
                                                     ("d", "e"), ("a", "b"), ("b", "c")])
    assert (pairs["margin"] == pairs["chosen_score"] - pairs["rejected_score"]).all()
    ranked = pairs.sort("margin", "chosen_id", "rejected_id", descending=[True, False, False])
    assert ranked["reason"][0].startswith("pair 1 of 9 with margin >= 0.25 by math_verify")


def test_all_pairs_min_margin_boundary_and_cap():
    prompts, candidates, scores = one_prompt(*ALL_ROWS)
    config = {"pairing": "all_pairs_above_margin", "min_margin": 0.5}
    assert sorted(chosen_rejected(build(prompts, candidates, scores, config))) == [
        ("a", "c"), ("a", "d"), ("a", "e"), ("b", "e"), ("c", "e"), ("d", "e")]  # 0.5 exactly counts
    capped = build(prompts, candidates, scores, {**config, "max_pairs_per_prompt": 3})
    assert sorted(chosen_rejected(capped)) == [("a", "c"), ("a", "e"), ("b", "e")]  # 1.0, 0.75, then (a, c) by id
    assert build(prompts, candidates, scores, {**config, "min_margin": 1.01}).height == 0


def test_all_pairs_edge_cases():
    config = {"pairing": "all_pairs_above_margin"}
    assert build(*one_prompt(("a", 1.0), ("b", 1.0), ("c", 1.0)), config).height == 0
    assert build(*one_prompt(("a", 1.0)), config).height == 0
    pairs = build(*one_prompt(("a", 1.0), ("b", 1.0), ("c", 0.0)), config)
    assert sorted(chosen_rejected(pairs)) == [("a", "c"), ("b", "c")]
    assert (pairs["chosen_id"] != pairs["rejected_id"]).all()


def verified(prompt_rows, verifier_rows):
    """prompt_rows: (cid, pid, reward score); verifier_rows: (cid, pid, verifier score[, status])."""
    pids = sorted({pid for _, pid, _ in prompt_rows})
    candidates = candidates_frame([(cid, pid, f"text {cid}") for cid, pid, _ in prompt_rows])
    scores = scores_frame([(cid, pid, s, "rm") for cid, pid, s in prompt_rows]
                          + [(cid, pid, s, "math_verify", *status) for cid, pid, s, *status in verifier_rows])
    return prompts_frame(*pids), candidates, scores


def test_required_verifier_drops_prompts_whose_best_fails():
    inputs = verified(
        [("a1", "p1", 3.0), ("b1", "p1", 1.0),    # best passes
         ("a2", "p2", 3.0), ("b2", "p2", 2.0), ("c2", "p2", 1.0),   # best fails, b2 passes: no pair
         ("a3", "p3", 3.0), ("b3", "p3", 1.0),    # best has no verifier score
         ("a4", "p4", 3.0), ("b4", "p4", 1.0),    # verifier errored on the best
         ("a5", "p5", 3.0), ("b5", "p5", 1.0)],   # best scores 0.5: passes only with min 0.5
        [("a1", "p1", 1.0), ("b1", "p1", 0.0), ("a2", "p2", 0.0), ("b2", "p2", 1.0), ("b3", "p3", 1.0),
         ("a4", "p4", 1.0, "error"), ("a5", "p5", 0.5), ("b5", "p5", 0.0)])
    strict = build(*inputs, {"scorer": "rm", "required_verifier": "math_verify"})
    assert chosen_rejected(strict) == [("a1", "b1")]
    assert "math_verify" in strict["reason"][0] and details(strict)[0]["chosen_verifier_score"] == 1.0
    lenient = build(*inputs, {"scorer": "rm", "required_verifier": "math_verify", "required_verifier_min": 0.5})
    assert chosen_rejected(lenient) == [("a1", "b1"), ("a5", "b5")]
    random = build(*inputs, {"scorer": "rm", "required_verifier": "math_verify", "pairing": "best_vs_random"})
    assert chosen_rejected(random) == [("a1", "b1")]


def test_required_verifier_in_all_pairs_skips_failing_chosen():
    inputs = verified([("a", "p1", 3.0), ("b", "p1", 2.0), ("c", "p1", 1.0)],
                      [("a", "p1", 0.0), ("b", "p1", 1.0), ("c", "p1", 0.0)])
    pairs = build(*inputs, {"scorer": "rm", "required_verifier": "math_verify", "pairing": "all_pairs_above_margin"})
    assert chosen_rejected(pairs) == [("b", "c")]


@pytest.mark.parametrize("pairing", ["best_vs_worst", "best_vs_random", "all_pairs_above_margin"])
def test_every_candidate_failing_the_verifier_gives_no_pair(pairing):
    inputs = verified([("a", "p1", 3.0), ("b", "p1", 2.0), ("c", "p1", 1.0)],
                      [("a", "p1", 0.0), ("b", "p1", 0.0), ("c", "p1", 0.0)])
    assert build(*inputs, {"scorer": "rm", "required_verifier": "math_verify", "pairing": pairing}).height == 0
    closest = {"length_control": "closest"} if pairing != "all_pairs_above_margin" else {}
    assert build(*inputs, {"scorer": "rm", "required_verifier": "math_verify", "pairing": pairing,
                           **closest}).height == 0


# Dual margin: one pair per prompt (w vs l), beta 0.5. external margins 1, 0.5, 0.5, 0.75;
# implicit = 0.5 * ((pol - ref)(w) - (pol - ref)(l)) = 1, 100, 2, 0.
DUAL = {"p1": (1.0, 0.0, 2.0), "p2": (0.75, 0.25, 200.0), "p3": (0.75, 0.25, 4.0), "p4": (1.0, 0.25, 0.0)}
IMPLICIT = {"policy": "logprob:policy", "reference": "logprob:reference", "beta": 0.5}


def dual_inputs():
    cands, scs = [], []
    for pid, (w, l, delta) in DUAL.items():
        cands += [(f"{pid}-w", pid, f"winner {pid}"), (f"{pid}-l", pid, f"loser {pid}")]
        scs += [(f"{pid}-w", pid, w), (f"{pid}-l", pid, l),
                (f"{pid}-w", pid, -50.0 + delta, "logprob:policy"), (f"{pid}-w", pid, -50.0, "logprob:reference"),
                (f"{pid}-l", pid, -30.0, "logprob:policy"), (f"{pid}-l", pid, -30.0, "logprob:reference")]
    # p5: the rejected lacks the reference log-prob; p6: the chosen lacks the policy log-prob -> dropped
    cands += [("p5-w", "p5", "w5"), ("p5-l", "p5", "l5"), ("p6-w", "p6", "w6"), ("p6-l", "p6", "l6")]
    scs += [("p5-w", "p5", 1.0), ("p5-l", "p5", 0.0), ("p5-w", "p5", -1.0, "logprob:policy"),
            ("p5-w", "p5", -1.0, "logprob:reference"), ("p5-l", "p5", -9.0, "logprob:policy"),
            ("p6-w", "p6", 1.0), ("p6-l", "p6", 0.0), ("p6-w", "p6", -1.0, "logprob:reference"),
            ("p6-l", "p6", -9.0, "logprob:policy"), ("p6-l", "p6", -9.0, "logprob:reference")]
    return prompts_frame(*DUAL, "p5", "p6"), candidates_frame(cands), scores_frame(scs)


def dual(config):
    pairs = build(*dual_inputs(), {"implicit_margin": IMPLICIT, **config})
    return pairs, {pid: d for pid, d in zip(pairs["prompt_id"], details(pairs), strict=True)}


def test_dual_margin_implicit_margins_and_minmax_values():
    pairs, by_prompt = dual({})
    assert sorted(by_prompt) == ["p1", "p2", "p3", "p4"]  # p5, p6 lack a log-prob
    assert {p: d["implicit_margin"] for p, d in by_prompt.items()} == {"p1": 1.0, "p2": 100.0, "p3": 2.0, "p4": 0.0}
    assert {p: d["external_margin_norm"] for p, d in by_prompt.items()} == {"p1": 1.0, "p2": 0.0, "p3": 0.0, "p4": 0.5}
    assert {p: d["implicit_margin_norm"] for p, d in by_prompt.items()} == pytest.approx(
        {"p1": 0.01, "p2": 1.0, "p3": 0.02, "p4": 0.0})
    assert {p: d["combined_margin"] for p, d in by_prompt.items()} == pytest.approx(
        {"p1": 1.01, "p2": 1.0, "p3": 0.02, "p4": 0.5})
    assert all(d["chosen_length"] == 9 and d["rejected_length"] == 8 for d in by_prompt.values())
    assert "dual margin" in pairs["reason"][0]


def kept(config):
    return sorted(dual(config)[0]["prompt_id"].to_list())


def test_dual_margin_keep_top_fraction_minmax_and_rank_sum_and_product():
    # minmax sum: p1 1.01, p2 1.0, p4 0.5, p3 0.02
    assert kept({"keep_top_fraction": 0.25}) == ["p1"]
    assert kept({"keep_top_fraction": 0.5}) == ["p1", "p2"]
    assert kept({"keep_top_fraction": 0.6}) == ["p1", "p2", "p4"]  # ceil(2.4) = 3
    assert kept({"keep_top_fraction": 0.75}) == ["p1", "p2", "p4"]
    # minmax product: p1 0.01, p2 = p3 = p4 = 0: the tie goes to the smallest pair id (p4's)
    pair_ids = {pid: ids.pair_id("margin", f"{pid}-w", f"{pid}-l", pid) for pid in DUAL}
    assert min(("p2", "p3", "p4"), key=pair_ids.get) == "p4"
    assert kept({"keep_top_fraction": 0.5, "dual_combine": "product"}) == ["p1", "p4"]
    # rank (average rank / n): external p1 1, p2 = p3 0.375, p4 0.75; implicit p1 0.5, p2 1, p3 0.75, p4 0.25
    pairs, by_prompt = dual({"dual_normalise": "rank"})
    assert {p: d["external_margin_norm"] for p, d in by_prompt.items()} == {"p1": 1.0, "p2": 0.375, "p3": 0.375,
                                                                            "p4": 0.75}
    assert {p: d["implicit_margin_norm"] for p, d in by_prompt.items()} == {"p1": 0.5, "p2": 1.0, "p3": 0.75,
                                                                            "p4": 0.25}
    # rank sum: p1 1.5, p2 1.375, p3 1.125, p4 1.0 -- p3 beats p4 here, unlike minmax
    assert kept({"dual_normalise": "rank", "keep_top_fraction": 0.75}) == ["p1", "p2", "p3"]
    assert kept({"dual_normalise": "rank", "keep_top_fraction": 0.25}) == ["p1"]
    # rank product: p1 0.5, p2 0.375, p3 0.28125, p4 0.1875
    assert kept({"dual_normalise": "rank", "dual_combine": "product", "keep_top_fraction": 0.5}) == ["p1", "p2"]
    assert kept({"dual_normalise": "rank", "dual_combine": "product", "keep_top_fraction": 0.75}) == [
        "p1", "p2", "p3"]
    assert kept({"keep_top_fraction": 1.0}) == ["p1", "p2", "p3", "p4"]


def test_dual_margin_single_pair_and_margin_only_fraction():
    prompts, candidates, scores = one_prompt(("a", 1.0), ("b", 0.0))
    scores = pl.concat([scores, scores_frame([("a", "p1", -1.0, "logprob:policy"), ("b", "p1", -1.0, "logprob:policy"),
                                              ("a", "p1", -2.0, "logprob:reference"),
                                              ("b", "p1", -1.0, "logprob:reference")])])
    pairs = build(prompts, candidates, scores, {"implicit_margin": IMPLICIT, "keep_top_fraction": 0.1})
    d = details(pairs)[0]
    assert (d["implicit_margin"], d["external_margin_norm"], d["implicit_margin_norm"]) == (0.5, 1.0, 1.0)
    # keep_top_fraction alone ranks by the margin: p1 1.0, p2 0.5, p3 0.5, p4 0.75, p5 1.0, p6 1.0
    prompts, candidates, scores = dual_inputs()
    assert sorted(build(prompts, candidates, scores, {"keep_top_fraction": 0.5})["prompt_id"]) == ["p1", "p5", "p6"]
    assert sorted(build(prompts, candidates, scores, {"keep_top_fraction": 0.6})["prompt_id"]) == [
        "p1", "p4", "p5", "p6"]  # ceil(3.6) = 4
    top2 = build(prompts, candidates, scores, {"keep_top_fraction": 0.25})  # ceil(1.5) = 2 of three tied at 1.0
    tied = sorted(ids.pair_id("margin", f"{p}-w", f"{p}-l", p) for p in ("p1", "p5", "p6"))
    assert sorted(top2["pair_id"]) == tied[:2]
    assert "margin in the top 0.25" in top2["reason"][0]


def test_madpo_weights():
    prompts = prompts_frame("p1", "p2", "p3")
    candidates = candidates_frame([(f"{p}-{s}", p, f"{p} {s}") for p in ("p1", "p2", "p3") for s in "wl"])
    scores = scores_frame([("p1-w", "p1", 1.0), ("p1-l", "p1", 0.0), ("p2-w", "p2", 2.0), ("p2-l", "p2", 0.0),
                           ("p3-w", "p3", 3.0), ("p3-l", "p3", 0.0)])
    pairs = build(prompts, candidates, scores, {"madpo": {"scale": 1.0}})
    # margins 1, 2, 3: mean 2, population std sqrt(2/3); z = -1.2247, 0, 1.2247; w = 2 / (1 + e^z)
    assert pairs["margin"].to_list() == [1.0, 2.0, 3.0]
    assert pairs["weight"].to_list() == pytest.approx([1.5457953, 1.0, 0.4542047], abs=1e-6)
    assert sum(pairs["weight"]) == pytest.approx(3.0)
    assert [d["margin_z"] for d in details(pairs)] == pytest.approx([-1.2247449, 0.0, 1.2247449])
    steeper = build(prompts, candidates, scores, {"madpo": {"scale": 2.0}})["weight"].to_list()
    assert steeper == pytest.approx([1.8410483, 1.0, 0.1589517], abs=1e-6)
    flat = scores_frame([(f"{p}-{s}", p, 1.0 if s == "w" else 0.0) for p in ("p1", "p2", "p3") for s in "wl"])
    assert build(prompts, candidates, flat, {"madpo": {}})["weight"].to_list() == [1.0, 1.0, 1.0]
    assert build(prompts, candidates, scores)["weight"].null_count() == 3  # no madpo, no weight


def filler(first: str, length: int) -> str:
    """`length` characters starting with `first`: varied letters, so no quality gate fires."""
    import random
    import string

    rng = random.Random(length)
    return first + "".join(rng.choice(string.ascii_lowercase + "  ") for _ in range(length - 1))


CLOSEST_ROWS = (("a", 1.0, filler("a", 100)), ("e", 0.875, "e" * 12), ("b", 0.75, "b" * 12), ("c", 0.5, "c" * 8),
                ("d", 0.0, "d" * 10))


def test_length_control_picks_the_closest_length_chosen():
    prompts, candidates, scores = one_prompt(*CLOSEST_ROWS)
    closest = {"length_control": "closest"}
    pairs = build(prompts, candidates, scores, closest)
    assert chosen_rejected(pairs) == [("e", "d")]  # e, b, c are all 2 chars off: the highest score wins
    d = details(pairs)[0]
    assert (d["chosen_length"], d["rejected_length"], d["length_ratio"]) == (12, 10, 1.2)
    assert pairs["reason"][0].startswith("closest-length chosen (12 vs 10 chars) against the worst")
    assert chosen_rejected(build(prompts, candidates, scores, {**closest, "min_margin": 0.9})) == [("a", "d")]
    assert chosen_rejected(build(prompts, candidates, scores, {**closest, "min_margin": 0.875})) == [("e", "d")]
    assert chosen_rejected(build(prompts, candidates, scores)) == [("a", "d")]  # without: best vs worst
    verifier = scores_frame([("a", "p1", 1.0, "math_verify"), ("e", "p1", 0.0, "math_verify"),
                             ("b", "p1", 1.0, "math_verify"), ("c", "p1", 1.0, "math_verify"),
                             ("d", "p1", 0.0, "math_verify")])
    rm = scores.with_columns(pl.lit("rm").alias("scorer"))
    pairs = build(prompts, candidates, pl.concat([rm, verifier]),
                  {**closest, "scorer": "rm", "required_verifier": "math_verify"})
    assert chosen_rejected(pairs) == [("b", "d")]  # e fails the verifier


def test_length_control_with_best_vs_random():
    prompts, candidates, scores = one_prompt(*CLOSEST_ROWS)
    lengths = {cid: len(text) for cid, _, text in CLOSEST_ROWS}
    score = {cid: s for cid, s, _ in CLOSEST_ROWS}
    for seed in range(4):
        pairs = build(prompts, candidates, scores, {"pairing": "best_vs_random", "length_control": "closest",
                                                    "seed": seed})
        rejected = build(prompts, candidates, scores, {"pairing": "best_vs_random", "seed": seed})["rejected_id"][0]
        beating = [c for c in score if score[c] > score[rejected]]
        expected = min(beating, key=lambda c: (abs(lengths[c] - lengths[rejected]), -score[c], c))
        assert chosen_rejected(pairs) == [(expected, rejected)]


def test_length_penalty_changes_the_pick_but_not_the_stored_scores():
    rows = (("a", 1.0, filler("a", 2000)), ("b", 0.75, filler("b", 100)), ("c", 0.0, filler("c", 101)),
            ("d", 0.25, filler("d", 3000)))
    prompts, candidates, scores = one_prompt(*rows)
    assert chosen_rejected(build(prompts, candidates, scores)) == [("a", "c")]
    pairs = build(prompts, candidates, scores, {"length_penalty": 0.2})
    # rank scores: a 1 - 0.4 = 0.6, b 0.75 - 0.02 = 0.73, c -0.02, d 0.25 - 0.6 = -0.35
    assert chosen_rejected(pairs) == [("b", "d")]
    row = pairs.to_dicts()[0]
    assert (row["chosen_score"], row["rejected_score"], row["margin"]) == (0.75, 0.25, 0.5)
    d = json.loads(row["details_json"])
    assert d["chosen_rank_score"] == pytest.approx(0.73) and d["rejected_rank_score"] == pytest.approx(-0.35)
    assert d["length_ratio"] == pytest.approx(100 / 3000)
    assert "0.2*chars/1000" in row["reason"]
    # a penalty that turns the order around (shorter but lower-scored ranks first) forms no pair
    inverted = one_prompt(("a", 1.0, filler("a", 3000)), ("b", 0.5, "b" * 10))
    assert build(*inverted, {"length_penalty": 1.0}).height == 0
    assert chosen_rejected(build(*inverted, {"length_penalty": 0.1})) == [("a", "b")]


def test_details_json_length_ratio_for_every_pairing():
    rows = (("a", 1.0, "x" * 6), ("b", 0.5, "y" * 3), ("c", 0.0, "z" * 4))
    for config in ({}, {"pairing": "best_vs_random"}, {"pairing": "all_pairs_above_margin"}):
        pairs = build(*one_prompt(*rows), config)
        lengths = {cid: len(text) for cid, _, text in rows}
        for row, d in zip(pairs.to_dicts(), details(pairs), strict=True):
            assert d["chosen_length"] == lengths[row["chosen_id"]] == len(row["chosen"])
            assert d["rejected_length"] == lengths[row["rejected_id"]] == len(row["rejected"])
            assert d["length_ratio"] == pytest.approx(d["chosen_length"] / d["rejected_length"])
    assert details(build(*one_prompt(*rows)))[0]["length_ratio"] == 1.5
    empty = build(*one_prompt(("a", 1.0, "answer"), ("b", 0.0, "")), {"gated_rejected": True})  # "" is gated
    assert details(empty)[0] == {"chosen_length": 6, "rejected_length": 0, "length_ratio": None}


def test_the_same_text_in_nfc_and_nfd_is_one_answer_and_the_pick_falls_to_the_next_text():
    """Two models wrote "café au lait", one with é, one with e + U+0301, rated 9 and 1: paired, they would
    be refused as identical and the prompt would get nothing. One stands for both (counted
    same_text); the worst distinct text is the rejected."""
    from curate.pairs import rule

    candidates = candidates_frame([("a", "p1", "caf\u00e9 au lait"), ("b", "p1", " cafe\u0301 au lait\n"),
                                   ("c", "p1", "Tea.")])
    scores = scores_frame([("a", "p1", 9.0, "imported:r"), ("b", "p1", 1.0, "imported:r"),
                           ("c", "p1", 5.0, "imported:r")])
    with rule.counting() as refused:
        pairs = build(prompts_frame("p1"), candidates, scores, {"scorer": "imported:r"})
    assert [(row["chosen_id"], row["rejected_id"]) for row in pairs.iter_rows(named=True)] == [("a", "c")]
    assert refused == {"same_text": 1}
