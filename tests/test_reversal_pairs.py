"""Constraint reversal (RPO) pairs: the chosen made perfect by reversing what it fails."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import polars as pl
import pytest

from curate import ids
from curate.lake import schemas
from curate.pairs import reversal, rule
from curate.pairs.registry import STRATEGIES, build_pairs
from curate.score.verify import constraints as library
from curate.score.verify.constraints import check_all, check_constraint, describe_constraint, reverse_constraint

NOW = datetime(2024, 7, 8, tzinfo=timezone.utc)

NO_COMMA = {"type": "punctuation:no_comma", "kwargs": {}}
HAS_COMMA = {"type": "punctuation:has_comma", "kwargs": {}}
LOWER = {"type": "change_case:english_lowercase", "kwargs": {}}


def words(relation, n):
    return {"type": "length_constraints:number_words", "kwargs": {"relation": relation, "num_words": n}}


def include(*keywords):
    return {"type": "keywords:existence", "kwargs": {"keywords": list(keywords)}}


def forbid(*forbidden):
    return {"type": "keywords:forbidden_words", "kwargs": {"forbidden_words": list(forbidden)}}


def prompt_row(pid, constraints, content=None, task_fields=None, system=None, task="instruction"):
    """A prompt row; its base_prompt (which reversal needs) is the request unless task_fields says."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": content or f"Write about {pid}."}]
    if task_fields is None:
        task_fields = {"base_prompt": f"Write about {pid}."}
    return {"prompt_id": pid, "source": "s", "task": task, "messages": messages,
            "constraints_json": json.dumps(constraints) if constraints is not None else None,
            "task_fields_json": json.dumps(task_fields) if task_fields else None,
            "run_id": "r0", "created_at": NOW}


def prompts_frame(rows):
    return pl.from_arrow(schemas.conform("prompts", rows))


def candidates_frame(rows):
    """rows: (candidate_id, prompt_id, text)."""
    return pl.from_arrow(schemas.conform("candidates", [
        {"candidate_id": cid, "prompt_id": pid, "model": "gen@fp", "sampling_json": "{}", "sample_index": i,
         "seed": i, "text": text, "run_id": "r0", "created_at": NOW}
        for i, (cid, pid, text) in enumerate(rows)
    ]))


def scores_frame(rows):
    """rows: (candidate_id, prompt_id, score, scorer)."""
    return pl.from_arrow(schemas.conform("scores", [
        {"score_id": ids.score_id(cid, scorer, "1"), "candidate_id": cid, "prompt_id": pid, "scorer": scorer,
         "scorer_version": "1", "score": score, "status": "ok", "run_id": "r0", "created_at": NOW}
        for cid, pid, score, scorer in rows
    ]))


def build(prompts, candidates, scores=None, config=None):
    return build_pairs("reversal", prompts, candidates, scores if scores is not None else scores_frame([]),
                          config or {}, run_id="run-x")


# A prompt whose best candidates fail two of three constraints' originals -----------------------
REWRITE_CONSTRAINTS = [NO_COMMA, include("apple"), words("at least", 5)]
REWRITE_CANDIDATES = [
    ("a", "p1", "apple pie, yes"),     # comma, apple, 3 words: follows 1 (the keyword)
    ("b", "p1", "banana bread, yes"),  # comma, no apple, 3 words: follows 0
    ("c", "p1", "apple, pie"),         # comma, apple, 2 words: follows 1
]


def test_reversal_is_registered():
    assert STRATEGIES["reversal"] is reversal.STRATEGY
    empty = build_pairs("reversal", prompts_frame([]), candidates_frame([]), scores_frame([]), {}, "r")
    assert empty.height == 0  # build_pairs finds it by name


def test_failed_constraints_reversed_and_rejected_fails_the_rewritten_list():
    prompts = prompts_frame([prompt_row("p1", REWRITE_CONSTRAINTS, content="Describe a fruit.")])
    pairs = build(prompts, candidates_frame(REWRITE_CANDIDATES))
    assert pairs.height == 1
    row = pairs.to_dicts()[0]
    # a and c tie on 1 followed: the smallest id is chosen; c follows every rewritten constraint,
    # b fails the keyword one
    assert (row["chosen_id"], row["rejected_id"]) == ("a", "b")
    assert (row["chosen"], row["rejected"]) == ("apple pie, yes", "banana bread, yes")
    details = json.loads(row["details_json"])
    assert details["original_constraints"] == REWRITE_CONSTRAINTS
    assert details["rewritten_constraints"] == [HAS_COMMA, include("apple"), words("less than", 5)]
    assert details["reversed_indices"] == [0, 2]
    assert details["chosen_followed"] == 3 and details["chosen_followed_original"] == 1
    assert details["rejected_failed"] == 1
    assert details["rewrite"] == "base_prompt"
    assert row["chosen_score"] == 1.0
    assert row["rejected_score"] == pytest.approx(2 / 3)
    assert row["margin"] == pytest.approx(1 / 3)
    assert row["scorer"] == "constraints"
    assert row["prompt_id"] == "p1"
    assert row["pair_id"] == ids.pair_id("reversal", "a", "b", "p1")
    assert "reversed 2 of 3" in row["reason"] and "rejected fails 1" in row["reason"]
    # the base prompt with the rewritten constraints instead of the original ones
    assert row["prompt"] == [{"role": "user", "content": (
        "Write about p1.\n\n"
        "Use at least one comma in your response.\n"
        'Include the keyword "apple" in your response.\n'
        "Answer with less than 5 words.")}]
    assert row["strategy"] == "reversal" and row["run_id"] == "run-x"
    schemas.conform("pairs", pairs.to_arrow())


def test_base_prompt_rewrites_the_request_and_keeps_the_system_message():
    original = ("Describe a fruit. In your entire response, refrain from the use of any commas. "
                "Answer with at least 5 words.")
    prompts = prompts_frame([prompt_row("p1", REWRITE_CONSTRAINTS, content=original, system="Be brief.",
                                        task_fields={"base_prompt": "Describe a fruit."})])
    row = build(prompts, candidates_frame(REWRITE_CANDIDATES)).to_dicts()[0]
    assert row["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Describe a fruit.\n\nUse at least one comma in your response.\n"
                                    'Include the keyword "apple" in your response.\n'
                                    "Answer with less than 5 words."},
    ]
    assert json.loads(row["details_json"])["rewrite"] == "base_prompt"
    # without a base_prompt the original, contradicting sentences would stay: no pair, counted
    with rule.counting() as refused:
        none = build(prompts_frame([prompt_row("p1", REWRITE_CONSTRAINTS, content=original, system="Be brief.",
                                               task_fields={"note": "no base prompt"})]),
                     candidates_frame(REWRITE_CANDIDATES))
    assert none.is_empty() and refused == {"reversal_no_base_prompt": 1}


def test_a_chosen_that_fails_nothing_gives_no_reversal_pair():
    """Nothing to reverse: the pair would be margin's on the same evidence, so reversal counts it."""
    constraints = [NO_COMMA, include("apple"), words("less than", 10)]
    candidates = candidates_frame([
        ("a", "p1", "I like apple pie"),                                              # follows 3
        ("b", "p1", "apple, pear"),                                                   # follows 2
        ("c", "p1", "pears, plums, and figs are all fine fruits to eat today"),       # follows 0
    ])
    prompts = prompts_frame([prompt_row("p1", constraints, content="Describe a fruit.",
                                        task_fields={"base_prompt": "Describe a fruit."})])
    with rule.counting() as refused:
        assert build(prompts, candidates).is_empty()
    assert refused == {"reversal_unchanged": 1}


def test_quality_scorer_breaks_ties_on_followed_count():
    prompts = prompts_frame([prompt_row("p1", REWRITE_CONSTRAINTS)])
    scores = scores_frame([("a", "p1", 0.1, "reward:rm"), ("c", "p1", 0.9, "reward:rm"),
                           ("b", "p1", 5.0, "reward:rm")])  # b follows fewer: quality never outranks that
    row = build(prompts, candidates_frame(REWRITE_CANDIDATES), scores,
                {"quality_scorer": "reward:rm"}).to_dicts()[0]
    assert (row["chosen_id"], row["rejected_id"]) == ("c", "b")
    # a scored candidate outranks an unscored one of the same count
    only_c = scores_frame([("c", "p1", -3.0, "reward:rm")])
    row = build(prompts, candidates_frame(REWRITE_CANDIDATES), only_c,
                {"quality_scorer": "reward:rm"}).to_dicts()[0]
    assert row["chosen_id"] == "c"
    assert json.loads(row["params_json"])["quality_scorer"] == "reward:rm"


def test_all_candidates_following_the_same_constraints_give_no_pair():
    prompts = prompts_frame([prompt_row("p-fail", [NO_COMMA, include("apple")]),
                             prompt_row("p-perfect", [NO_COMMA, include("apple")])])
    candidates = candidates_frame([
        ("a", "p-fail", "apple, one"), ("b", "p-fail", "apple, two"), ("c", "p-fail", "apple, three"),
        ("d", "p-perfect", "apple one"), ("e", "p-perfect", "apple two"),
    ])
    assert build(prompts, candidates).height == 0


def test_single_candidate_gives_no_pair():
    prompts = prompts_frame([prompt_row("p1", REWRITE_CONSTRAINTS)])
    assert build(prompts, candidates_frame([("a", "p1", "apple pie, yes")])).height == 0


def test_every_candidate_failing_everything_gives_no_pair():
    prompts = prompts_frame([prompt_row("p1", [NO_COMMA, include("apple"), words("at least", 20)])])
    candidates = candidates_frame([("a", "p1", "pear, plum"), ("b", "p1", "fig, date"),
                                   ("c", "p1", "kiwi, lime, lemon")])
    assert build(prompts, candidates).height == 0


def test_no_reverse_defined_means_no_pair(monkeypatch):
    real = library.reverse_constraint

    def no_comma_has_no_reverse(constraint):
        return None if constraint["type"] == "punctuation:no_comma" else real(constraint)

    monkeypatch.setattr(library, "reverse_constraint", no_comma_has_no_reverse)
    prompts = prompts_frame([
        prompt_row("p-comma", REWRITE_CONSTRAINTS),  # the chosen fails no_comma: no pair
        prompt_row("p-words", [NO_COMMA, include("apple"), words("at least", 5)]),
    ])
    candidates = candidates_frame([
        ("a", "p-comma", "apple pie, yes"), ("b", "p-comma", "banana bread, yes"),
        ("c", "p-words", "apple pie"),            # no comma, apple, 2 words: fails only the count
        ("d", "p-words", "banana, split"),       # fails all three
    ])
    pairs = build(prompts, candidates)
    assert pairs["prompt_id"].to_list() == ["p-words"]
    row = pairs.to_dicts()[0]
    assert (row["chosen_id"], row["rejected_id"]) == ("c", "d")
    assert json.loads(row["details_json"])["reversed_indices"] == [2]


def test_other_tasks_missing_text_and_bad_constraints_ignored():
    prompts = prompts_frame([
        prompt_row("p-chat", None, task="chat"),
        prompt_row("p-bad", [{"type": "nope:unknown", "kwargs": {}}]),
        prompt_row("p1", [NO_COMMA, include("zebra")]),  # e fails the keyword: reversed
    ])
    candidates = candidates_frame([
        ("a", "p-chat", "x, y"), ("b", "p-chat", "x y"),
        ("c", "p-bad", "x, y"), ("d", "p-bad", "x y"),
        ("e", "p1", "no comma here"), ("f", "p1", None), ("g", "p1", "a, comma"),
    ])
    pairs = build(prompts, candidates)
    assert pairs["prompt_id"].to_list() == ["p1"]
    assert (pairs["chosen_id"][0], pairs["rejected_id"][0]) == ("e", "g")


def test_unknown_config_key_is_an_error():
    prompts = prompts_frame([prompt_row("p1", REWRITE_CONSTRAINTS)])
    with pytest.raises(ValueError, match="'scorer'"):
        build(prompts, candidates_frame(REWRITE_CANDIDATES), config={"scorer": "constraints"})
    with pytest.raises(ValueError, match="quality_scorer"):
        build(prompts, candidates_frame(REWRITE_CANDIDATES), config={"quality_scorer": ""})


def test_empty_inputs_give_an_empty_pairs_table():
    pairs = build(prompts_frame([]), candidates_frame([]))
    assert pairs.height == 0
    assert pairs.columns == schemas.table("pairs").column_names


# The key property over a varied generated set -------------------------------------------------
VOCAB = ["apple", "river", "stone", "quiet", "Bright", "Morning", "cloud", "garden", "silver", "Paper",
         "window", "lamp", "forest", "ocean", "Yellow", "market", "bridge", "candle", "music", "winter"]


def _constraint_pool(rng: random.Random) -> list[dict]:
    return [
        words(rng.choice(["less than", "at least"]), rng.randint(4, 14)),
        include(*rng.sample(VOCAB[:10], rng.randint(1, 2))),
        forbid(*rng.sample(VOCAB[10:], rng.randint(1, 2))),
        LOWER,
        NO_COMMA,
        {"type": "keywords:letter_frequency",
         "kwargs": {"letter": rng.choice("aeo"), "let_relation": rng.choice(["less than", "at least"]),
                    "let_frequency": rng.randint(2, 6)}},
    ]


def _text(rng: random.Random) -> str:
    chosen = [rng.choice(VOCAB) for _ in range(rng.randint(2, 16))]
    if rng.random() < 0.5:
        chosen = [w.lower() for w in chosen]
    sep = ", " if rng.random() < 0.4 else " "
    return sep.join(chosen) + "."


def generated_set(seed: int = 7, n_prompts: int = 30):
    rng = random.Random(seed)
    prompt_rows, candidate_rows = [], []
    for p in range(n_prompts):
        pid = f"p{p:02d}"
        constraints = rng.sample(_constraint_pool(rng), rng.randint(2, 5))
        fields = {"base_prompt": f"Write about {pid}."} if p % 2 else None
        prompt_rows.append(prompt_row(pid, constraints, task_fields=fields))
        for c in range(rng.randint(1, 6)):
            candidate_rows.append((f"{pid}-c{c}", pid, _text(rng)))
    return prompts_frame(prompt_rows), candidates_frame(candidate_rows)


def test_every_pair_chosen_follows_the_rewritten_list_and_rejected_fails_it():
    prompts, candidates = generated_set()
    pairs = build(prompts, candidates)
    assert pairs.height >= 10
    texts = dict(zip(candidates["candidate_id"], candidates["text"]))
    by_prompt: dict[str, list[str]] = {}
    for cid, pid in zip(candidates["candidate_id"], candidates["prompt_id"]):
        by_prompt.setdefault(pid, []).append(cid)
    originals = dict(zip(prompts["prompt_id"], prompts["constraints_json"]))
    rewrites = set()
    for row in pairs.iter_rows(named=True):
        details = json.loads(row["details_json"])
        original, rewritten = details["original_constraints"], details["rewritten_constraints"]
        assert original == json.loads(originals[row["prompt_id"]])
        assert len(rewritten) == len(original)
        assert row["chosen_id"] != row["rejected_id"]
        assert texts[row["chosen_id"]] == row["chosen"] and texts[row["rejected_id"]] == row["rejected"]
        # independent re-check with the library
        assert all(check_all(row["chosen"], rewritten))
        rejected_followed = check_all(row["rejected"], rewritten)
        assert not all(rejected_followed)
        assert details["rejected_failed"] == rejected_followed.count(False)
        assert row["margin"] == pytest.approx(rejected_followed.count(False) / len(original))
        # exactly the failed originals were reversed, the rest kept
        chosen_original = check_all(row["chosen"], original)
        assert details["reversed_indices"] == [j for j, ok in enumerate(chosen_original) if not ok]
        for j, (before, after) in enumerate(zip(original, rewritten)):
            assert after == (reverse_constraint(before) if j in details["reversed_indices"] else before)
        # the chosen follows the most originals of its prompt; the rejected fails the most rewritten
        peers = by_prompt[row["prompt_id"]]
        assert sum(chosen_original) == max(sum(check_all(texts[c], original)) for c in peers)
        assert rejected_followed.count(False) == max(
            [sum(not check_constraint(texts[c], r) for r in rewritten) for c in peers if c != row["chosen_id"]])
        # the prompt states every rewritten constraint when anything was reversed
        content = row["prompt"][-1]["content"]
        if details["reversed_indices"]:
            assert all(describe_constraint(c) in content for c in rewritten)
        else:
            assert row["prompt"] == prompts.filter(pl.col("prompt_id") == row["prompt_id"])["messages"][0].to_list()
        rewrites.add(details["rewrite"])
    assert rewrites == {"base_prompt"}  # the only way a reversal prompt is written
    # deterministic: the same input in another order gives the same pairs
    again = build(prompts.reverse(), candidates.reverse())
    assert again["pair_id"].to_list() == pairs["pair_id"].to_list()
