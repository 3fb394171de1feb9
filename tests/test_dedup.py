"""Exact dedup of whole pairs."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

from curate.dedup import drop_exact_duplicates, pair_dedup_key
from curate.lake import schemas

NOW = datetime(2024, 9, 1, tzinfo=timezone.utc)
PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]


def test_dedup_key_equal_for_case_and_whitespace_variants():
    base = pair_dedup_key(PROMPT, "The answer is 4.", "It is five.")
    variant = pair_dedup_key(
        [{"role": "system", "content": "  be   BRIEF.\n"}, {"role": "user", "content": "what\tis 2+2?"}],
        "the ANSWER  is 4.  ", "\nIT IS\nFIVE.",
    )
    assert base == variant
    assert len(base) == 32


def test_dedup_key_differs_on_content_order_and_role():
    base = pair_dedup_key(PROMPT, "4", "5")
    assert base != pair_dedup_key(PROMPT, "5", "4")  # swapping chosen and rejected is a different pair
    assert base != pair_dedup_key(PROMPT, "4", "6")
    assert base != pair_dedup_key(PROMPT[1:], "4", "5")
    assert base != pair_dedup_key([{"role": "user", "content": "Be brief."}, PROMPT[1]], "4", "5")
    assert base != pair_dedup_key(PROMPT, "4 ", "5x")


def _pair(pair_id, dedup_key, margin):
    return {"pair_id": pair_id, "prompt_id": "p", "strategy": "margin", "params_json": "{}",
            "prompt": PROMPT, "chosen": "c", "rejected": "r", "chosen_id": "c", "rejected_id": "r",
            "scorer": "math_verify", "chosen_score": None, "rejected_score": None, "margin": margin,
            "reason": "test", "dedup_key": dedup_key, "run_id": "r", "created_at": NOW}


def _frame(rows):
    return pl.from_arrow(schemas.conform("pairs", rows))


def test_keeps_larger_margin_within_batch():
    pairs = _frame([_pair("p-small", "k1", 0.25), _pair("p-big", "k1", 0.75), _pair("p-other", "k2", 0.1)])
    kept, dropped = drop_exact_duplicates(pairs)
    assert sorted(kept["pair_id"].to_list()) == ["p-big", "p-other"]
    assert dropped["pair_id"].to_list() == ["p-small"]
    assert kept["dedup_key"].n_unique() == kept.height
    assert kept.height + dropped.height == pairs.height


def test_equal_margin_keeps_smaller_pair_id_and_null_margin_loses():
    pairs = _frame([_pair("zz", "k", 0.5), _pair("aa", "k", 0.5), _pair("00", "k", None)])
    kept, dropped = drop_exact_duplicates(pairs)
    assert kept["pair_id"].to_list() == ["aa"]
    assert sorted(dropped["pair_id"].to_list()) == ["00", "zz"]


def test_drops_keys_already_kept_in_lake():
    pairs = _frame([_pair("p1", "k1", 1.0), _pair("p2", "k2", 1.0), _pair("p3", "k3", 0.5)])
    asked = []

    def kept_keys(keys):
        asked.append(sorted(keys))
        return {"k2", "k-unrelated"}

    kept, dropped = drop_exact_duplicates(pairs, kept_keys)
    assert sorted(kept["pair_id"].to_list()) == ["p1", "p3"]
    assert dropped["pair_id"].to_list() == ["p2"]
    assert asked == [["k1", "k2", "k3"]]  # asked once, with unique keys


def test_dropped_rows_are_whole_rows():
    pairs = _frame([_pair("a", "k", 0.1), _pair("b", "k", 0.9)])
    kept, dropped = drop_exact_duplicates(pairs)
    assert dropped.columns == pairs.columns
    assert dropped.to_dicts() == pairs.filter(pl.col("pair_id") == "a").to_dicts()
    assert kept.columns == pairs.columns


def test_no_duplicates_keeps_everything():
    pairs = _frame([_pair("a", "k1", 0.1), _pair("b", "k2", 0.2)])
    kept, dropped = drop_exact_duplicates(pairs)
    assert sorted(kept["pair_id"].to_list()) == ["a", "b"]
    assert dropped.height == 0


def test_empty_input_returns_empty_frames():
    empty = _frame([])
    calls = []
    kept, dropped = drop_exact_duplicates(empty, lambda keys: calls.append(keys) or set())
    assert kept.height == 0 and dropped.height == 0
    assert kept.columns == schemas.table("pairs").column_names
    assert calls == []


def test_real_key_variants_dedup_end_to_end():
    rows = []
    for i, (chosen, margin) in enumerate([("The answer is 4.", 0.5), ("the answer is 4. ", 1.0),
                                          ("THE   ANSWER IS 4.", 0.25)]):
        rows.append(_pair(f"p{i}", pair_dedup_key(PROMPT, chosen, "five"), margin))
    kept, dropped = drop_exact_duplicates(_frame(rows))
    assert kept["pair_id"].to_list() == ["p1"]
    assert sorted(dropped["pair_id"].to_list()) == ["p0", "p2"]
