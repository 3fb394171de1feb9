"""Exact dedup of pairs and prompts: Unicode NFKC, case and whitespace variants collapse."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from curate.dedup import DedupConfig, dedup_pairs, dedup_prompts, drop_id, pair_dedup_key, prompt_dedup_key
from curate.lake import schemas

NOW = datetime(2024, 9, 1, tzinfo=timezone.utc)
EXACT_ONLY = DedupConfig(minhash=False, semantic=False)


def pair(pair_id, prompt, chosen, rejected, margin=1.0):
    messages = [{"role": "user", "content": prompt}]
    return {"pair_id": pair_id, "prompt_id": "p", "strategy": "margin", "params_json": "{}",
            "prompt": messages, "chosen": chosen, "rejected": rejected, "chosen_id": "c", "rejected_id": "r",
            "scorer": "s", "chosen_score": None, "rejected_score": None, "margin": margin, "reason": "test",
            "dedup_key": pair_dedup_key(messages, chosen, rejected), "run_id": "r", "created_at": NOW}


def frame(rows, table="pairs"):
    return pl.from_arrow(schemas.conform(table, rows))


VARIANTS = [
    ("What is the café's ﬁrst dish?", "The ﬁrst dish is soup.", "Bread."),      # ligature fi, composed é
    ("what is the cafe\u0301's first dish?", "the first dish is soup.", "bread."),  # decomposed é
    ("WHAT  IS THE CAFÉ'S\tFIRST DISH?\n", "The first   dish is SOUP.", " Bread. "),
    # fullwidth letters, a no-break space
    ("\uff37\uff48\uff41\uff54 is the café's first\u00a0dish?", "The first dish is soup.", "Bread."),
]


def test_nfkc_case_and_whitespace_variants_share_one_key():
    keys = {pair_dedup_key([{"role": "user", "content": p}], c, r) for p, c, r in VARIANTS}
    assert len(keys) == 1
    prompt_keys = {prompt_dedup_key([{"role": "user", "content": p}]) for p, _, _ in VARIANTS}
    assert len(prompt_keys) == 1


def test_variants_collapse_to_the_larger_margin_and_different_texts_stay():
    rows = [pair(f"v{i}", p, c, r, margin=m) for i, ((p, c, r), m) in enumerate(zip(VARIANTS, [0.5, 2.0, 1.0, 0.1]))]
    rows += [pair("other-prompt", "What is the café's second dish?", "The first dish is soup.", "Bread."),
             pair("other-chosen", VARIANTS[0][0], "The first dish is salad.", "Bread."),
             pair("swapped", VARIANTS[0][0], "Bread.", "The first dish is soup.")]
    kept, drops = dedup_pairs(frame(rows), None, EXACT_ONLY, run_id="run-1")
    assert sorted(kept["pair_id"].to_list()) == ["other-chosen", "other-prompt", "swapped", "v1"]
    assert sorted(drops["item_id"].to_list()) == ["v0", "v2", "v3"]
    assert set(drops["kept_id"].to_list()) == {"v1"}
    assert set(drops["reason"].to_list()) == {"exact"}
    assert drops["similarity"].to_list() == [1.0] * 3
    row = drops.filter(pl.col("item_id") == "v0").row(0, named=True)
    assert row["drop_id"] == drop_id("pair", "v0", "exact")
    assert row["item_kind"] == "pair" and row["run_id"] == "run-1"
    assert json.loads(row["detail_json"])["dedup_key"] == rows[0]["dedup_key"]
    schemas.conform("dedup_drops", drops.to_arrow())  # matches schemas/dedup_drops.toml


def test_equal_margins_keep_smaller_pair_id_and_kept_order_is_input_order():
    rows = [pair("zz", "Q?", "a", "b", 1.0), pair("mm", "Other?", "a", "b", 1.0), pair("aa", "q ?", "A", "B", 1.0)]
    rows[2]["dedup_key"] = rows[0]["dedup_key"]  # same key as zz
    kept, drops = dedup_pairs(frame(rows), None, EXACT_ONLY)
    assert kept["pair_id"].to_list() == ["mm", "aa"]
    assert drops.select("item_id", "kept_id").rows() == [("zz", "aa")]


def prompt_row(prompt_id, content, task="chat", reference_answer=None, system=None):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    return {"prompt_id": prompt_id, "source": "s", "task": task, "messages": messages,
            "reference_answer": reference_answer, "reference_solution": None, "constraints_json": None,
            "task_fields_json": None, "run_id": "r", "created_at": NOW}


def test_prompt_exact_dedup_within_batch_and_against_kept():
    kept = frame([prompt_row("k1", "How many legs does a spider have?")], "prompts")
    new = frame([
        prompt_row("a1", "how many legs does a  SPIDER have?"),                # duplicate of kept k1
        prompt_row("b1", "What is 6 * 7?"),                                     # chat
        prompt_row("b2", "what is 6 * 7?", task="math", reference_answer="42"),  # same text, verifiable
        prompt_row("c1", "What is 6 * 8?"),
        prompt_row("d1", "What is 6 * 7?", system="Be brief."),                 # another conversation
    ], "prompts")
    kept_new, drops = dedup_prompts(new, kept, DedupConfig(), run_id="r2")
    assert kept_new["prompt_id"].to_list() == ["b2", "c1", "d1"]
    assert drops.select("item_id", "kept_id", "reason", "item_kind").sort("item_id").rows() == [
        ("a1", "k1", "exact", "prompt"), ("b1", "b2", "exact", "prompt")]


def test_prompt_already_kept_is_neither_kept_nor_dropped():
    kept = frame([prompt_row("k1", "Hello?")], "prompts")
    kept_new, drops = dedup_prompts(frame([prompt_row("k1", "Hello?")], "prompts"), kept)
    assert kept_new.height == 0 and drops.height == 0


def test_config_validation():
    with pytest.raises(ValueError, match="must divide"):
        DedupConfig(num_perm=128, bands=24)
    with pytest.raises(ValueError, match="minhash_threshold"):
        DedupConfig(minhash_threshold=1.5)
    with pytest.raises(ValueError, match="dedup: unknown config key 'treshold'"):
        DedupConfig.from_mapping({"treshold": 0.5})
    assert DedupConfig.from_mapping({"num_perm": 128, "bands": 32}).bands == 32
