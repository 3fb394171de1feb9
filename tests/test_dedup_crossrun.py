"""dedup_pairs across runs: tonight's pairs against everything already kept, stage by stage."""

from __future__ import annotations

import json
import random
import re
import zlib
from datetime import datetime, timezone

import numpy as np
import polars as pl

from curate.dedup import DedupConfig, dedup_pairs, drop_id, pair_dedup_key
from curate.lake import schemas

NOW = datetime(2024, 9, 1, tzinfo=timezone.utc)
ANSWER = ("To boil an egg, put it in a pot of cold water, bring the water to a boil, then lower the heat "
          "and let it simmer for nine minutes before cooling it in a bowl of iced water and peeling it.")
BAD = "Eggs cannot be boiled at home because the shell always explodes in the pot."


def pair(pair_id, prompt, chosen=ANSWER, rejected=BAD, margin=1.0, key=None):
    messages = [{"role": "user", "content": prompt}]
    return {"pair_id": pair_id, "prompt_id": "p", "strategy": "margin", "params_json": "{}",
            "prompt": messages, "chosen": chosen, "rejected": rejected, "chosen_id": "c", "rejected_id": "r",
            "scorer": "s", "chosen_score": None, "rejected_score": None, "margin": margin, "reason": "test",
            "dedup_key": key or pair_dedup_key(messages, chosen, rejected), "run_id": "r", "created_at": NOW}


def frame(rows):
    return pl.from_arrow(schemas.conform("pairs", rows))


def bag_of_words(texts):
    """A fake embedder: hashed bag of words, so reordered words are a cosine-1 paraphrase."""
    out = np.zeros((len(texts), 256), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            out[i, zlib.crc32(word.encode()) % 256] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_new_pairs_duplicating_kept_pairs_point_at_them_at_every_stage():
    kept = frame([pair("k-exact", "How do I boil an egg?", margin=0.1),
                  pair("k-near", "Explain in detail how I should boil a hen's egg so the yolk stays soft and "
                                 "the white is firm, for a breakfast for two people tomorrow morning."),
                  pair("k-sem", "What is the quickest way to cook rice on a stove?", chosen="Use a lid.",
                       rejected="Use no water.")])
    new = frame([
        pair("n-exact", "how do I   BOIL an egg?", margin=9.0),   # exact duplicate: loses despite its margin
        pair("n-near", "Explain in detail how I should boil a hen's egg so the yolk stays soft and the "
                       "white is firm, for a breakfast for three people tomorrow morning."),
        pair("n-sem", "On a stove, what is the way to cook rice quickest?", chosen="Use a lid.",
             rejected="Use no water."),
        pair("n-new", "How do I bake bread?", chosen="Knead, proof, bake.", rejected="Microwave flour."),
    ])
    kept_new, drops = dedup_pairs(new, kept, DedupConfig(), embed=bag_of_words, run_id="tonight")
    assert kept_new["pair_id"].to_list() == ["n-new"]
    got = drops.select("item_id", "reason", "kept_id").sort("item_id").rows()
    assert got == [("n-exact", "exact", "k-exact"), ("n-near", "minhash", "k-near"), ("n-sem", "semantic", "k-sem")]
    assert drops["drop_id"].to_list() == [drop_id("pair", i, r) for i, r, _ in
                                          drops.select("item_id", "reason", "kept_id").rows()]
    assert set(drops["run_id"]) == {"tonight"} and set(drops["item_kind"]) == {"pair"}


def test_stages_run_in_order_and_each_row_is_dropped_once():
    rows = [pair("a", "How do I boil an egg?", margin=3.0),
            pair("b", "How do I boil an egg?", margin=2.0),       # exact duplicate of a
            pair("c", "How do I boil an egg, please?", margin=1.0)]  # near/semantic duplicate of a
    kept_new, drops = dedup_pairs(frame(rows), None, DedupConfig(), embed=bag_of_words)
    assert kept_new["pair_id"].to_list() == ["a"]
    assert drops.select("item_id", "reason", "kept_id").sort("item_id").rows() == [
        ("b", "exact", "a"), ("c", "minhash", "a")]
    off = DedupConfig(exact=False, minhash=False)
    kept_new, drops = dedup_pairs(frame(rows), None, off, embed=bag_of_words)
    assert drops.select("item_id", "reason").sort("item_id").rows() == [("b", "semantic"), ("c", "semantic")]
    nothing = DedupConfig(exact=False, minhash=False, semantic=False)
    assert dedup_pairs(frame(rows), None, nothing)[0].height == 3


def test_result_never_holds_two_rows_with_one_dedup_key():
    rng = random.Random(5)
    prompts = [f"Question number {i} about topic {i * 7}?" for i in range(12)]
    answers = [f"Answer {i}: " + " ".join(rng.choice("abcdefghij") * 3 for _ in range(8)) for i in range(6)]

    def random_pair(pid):
        p, c, r = rng.choice(prompts), rng.choice(answers), rng.choice(answers)
        noise = rng.choice(["", " ", "  ", "\t"])
        prompt = noise + p.upper() if rng.random() < 0.3 else p
        return pair(pid, prompt, c + noise, r, margin=rng.choice([None, 0.5, 1.0]))

    kept = frame([random_pair(f"k{i}") for i in range(40)]).unique("dedup_key", keep="first", maintain_order=True)
    for night in range(3):
        new = frame([random_pair(f"n{night}-{i}") for i in range(80)])
        kept_new, drops = dedup_pairs(new, kept, DedupConfig(minhash=False, semantic=False), run_id=f"night{night}")
        assert kept_new["dedup_key"].n_unique() == kept_new.height
        assert not set(kept_new["dedup_key"]) & set(kept["dedup_key"])
        assert kept_new.height + drops.height == new.height
        keys = dict(zip(pl.concat([kept, kept_new])["pair_id"], pl.concat([kept, kept_new])["dedup_key"]))
        for item, kept_id in drops.select("item_id", "kept_id").rows():
            assert keys[kept_id] == new.filter(pl.col("pair_id") == item)["dedup_key"][0]
        kept = pl.concat([kept, kept_new])


def test_already_kept_pair_ids_are_skipped_and_reruns_are_stable():
    kept = frame([pair("k1", "How do I boil an egg?")])
    new = frame([pair("k1", "How do I boil an egg?"), pair("n1", "How do I boil an egg?", margin=5.0),
                 pair("n2", "How do I fry an egg?", chosen="Use a pan.", rejected="Use a kettle.")])
    first = dedup_pairs(new, kept, DedupConfig(), embed=bag_of_words, run_id="r1")
    again = dedup_pairs(new, kept, DedupConfig(), embed=bag_of_words, run_id="r1")
    assert first[0]["pair_id"].to_list() == ["n2"] == again[0]["pair_id"].to_list()
    assert first[1]["drop_id"].to_list() == again[1]["drop_id"].to_list()
    assert first[1].select("item_id", "kept_id").rows() == [("n1", "k1")]
    empty = dedup_pairs(new.filter(pl.col("pair_id") == "k1"), kept, DedupConfig())
    assert empty[0].height == 0 and empty[1].height == 0


def test_larger_margin_then_smaller_pair_id_wins_and_chains_point_at_the_survivor():
    rows = [pair("b", "Q one?", margin=1.0), pair("a", "q one?", margin=1.0), pair("c", "Q ONE?", margin=None),
            pair("d", "Q one ?", margin=2.0)]  # another exact key, but the same words
    kept_new, drops = dedup_pairs(frame(rows), None, DedupConfig(), embed=bag_of_words)
    assert kept_new["pair_id"].to_list() == ["d"]
    # a beats b (same margin, smaller id) and c (null margin) at the exact stage, then loses to d
    assert drops.select("item_id", "reason", "kept_id").sort("item_id").rows() == [
        ("a", "minhash", "d"), ("b", "exact", "d"), ("c", "exact", "d")]
    via = {r["item_id"]: json.loads(r["detail_json"]).get("via") for r in drops.to_dicts()}
    assert via == {"a": None, "b": "a", "c": "a"}
