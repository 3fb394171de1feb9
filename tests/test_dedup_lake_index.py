"""Cross-run dedup that reads only the kept pairs that can collide: the same decisions as the whole lake."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from curate.dedup import DedupConfig, dedup_pairs, lake_index
from curate.dedup.lake_index import KeptPairs, band_keys, union_signatures
from curate.dedup.minhash import minhash_duplicates
from curate.dedup.pairs import pair_texts
from curate.dedup.synthetic import WORDS
from curate.lake import schemas
from curate.lake.catalog import Lake
from tests.test_dedup_lake import lake_embedder, pair


def _sentence(rng, n=14):
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def _night_one(rng, count=120):
    rows = [pair("a", "How do I boil an egg?"), pair("z", "What is the capital of France?", "Paris.", "Lyon.")]
    rows += [pair(f"k{i:03d}", _sentence(rng), _sentence(rng, 20), _sentence(rng, 20)) for i in range(count)]
    return rows


def _night_two(first):
    base = {r["pair_id"]: r for r in first}
    k7 = base["k007"]
    edited = k7["chosen"].replace(k7["chosen"].split()[3], "zebra", 1)
    return [pair("d", "how do i boil an egg?", margin=5.0),                       # exact of a
            pair("e", "Boil an egg: how do I?", margin=2.0),                      # semantic of a
            pair("f", k7["prompt"][0]["content"], edited, k7["rejected"]),        # near copy of k007
            pair("g", "Name the capital city of France?", "Paris.", "Lyon."),     # paraphrase of z
            pair("h", "How do I fry an egg?")]                                    # new


def _commit(lake, kept_pairs, embedder):
    index = KeptPairs(lake, DedupConfig(), embed=embedder, model="fake")
    lake.commit({"pairs": kept_pairs.to_arrow(), "pair_dedup_index": index.index_rows(kept_pairs),
                 "embeddings": embedder.take_new_rows()})
    index.save()


def _frame(rows):
    return pl.from_arrow(schemas.conform("pairs", rows))


@pytest.fixture
def lake(tmp_path):
    with Lake(tmp_path / "lake") as lake:
        yield lake


def test_probed_kept_pairs_give_the_whole_lakes_decisions(lake):
    rng = random.Random(3)
    first = _night_one(rng)
    embedder = lake_embedder(lake)
    kept, _ = dedup_pairs(_frame(first), None, DedupConfig(), embed=embedder, run_id="n1")
    _commit(lake, kept, embedder)
    new = _frame(_night_two(first))

    embedder = lake_embedder(lake)
    index = KeptPairs(lake, DedupConfig(), embed=embedder, model="fake")
    probed = index.candidates(new)
    assert set(probed["pair_id"]) < set(kept["pair_id"]) and probed.height <= 6  # not the whole lake
    by_probe = dedup_pairs(new, probed, DedupConfig(), embed=embedder, run_id="n2")
    by_lake = dedup_pairs(new, lake.read("pairs"), DedupConfig(), embed=lake_embedder(lake), run_id="n2")
    assert by_probe[0]["pair_id"].to_list() == by_lake[0]["pair_id"].to_list()
    assert by_probe[1].drop("created_at").sort("item_id").rows() == by_lake[1].drop("created_at").sort("item_id").rows()
    # as the pairs step probes: semantic neighbours only for the pairs that pass exact and MinHash
    in_two = dedup_pairs(new, index.candidates(new, semantic=False), DedupConfig(), embed=embedder, run_id="n2",
                         semantic_kept=index.semantic_candidates)
    assert in_two[0]["pair_id"].to_list() == by_lake[0]["pair_id"].to_list()
    assert in_two[1].drop("created_at").sort("item_id").rows() == by_lake[1].drop("created_at").sort("item_id").rows()
    reasons = dict(by_probe[1].select("item_id", "reason").rows())
    assert reasons["d"] == "exact" and reasons["f"] == "minhash" and "h" not in reasons
    assert len(list(index.index_dir.glob("*.usearch"))) == 1 and index.indexed() == kept.height


def test_sync_indexes_pairs_kept_before_the_index_and_repairs_a_lost_file(lake):
    rng = random.Random(5)
    first = _night_one(rng, 40)
    embedder = lake_embedder(lake)
    kept, _ = dedup_pairs(_frame(first), None, DedupConfig(), embed=embedder, run_id="n1")
    lake.commit({"pairs": kept.to_arrow()})  # a lake from before the index: no index rows, no file
    index = KeptPairs(lake, DedupConfig(), embed=lake_embedder(lake), model="fake")
    assert index.sync() == kept.height and lake.count("pair_dedup_index") == kept.height
    assert index.indexed() == kept.height and index.sync() == 0
    segments = sorted(index.index_dir.glob("*.usearch"))
    segments[-1].unlink()  # the last segment missed its commit
    again = KeptPairs(lake, DedupConfig(), embed=lake_embedder(lake), model="fake")
    assert again.sync() > 0 and again.indexed() == kept.height and again.sync() == 0
    new = _frame(_night_two(first))
    assert set(again.candidates(new)["pair_id"]) >= {"a"}


def test_band_keys_find_every_pair_rensas_lsh_finds():
    rng = random.Random(9)
    texts = []
    for _ in range(150):
        words = [rng.choice(WORDS) for _ in range(rng.randint(20, 60))]
        texts.append(("q " + " ".join(words[:8]), " ".join(words), " ".join(words[::-1])))
        if rng.random() < 0.5:  # a light edit of the previous item
            edited = words[:]
            edited[rng.randrange(len(edited))] = "zebra"
            texts.append((texts[-1][0], " ".join(edited), texts[-1][2]))
    config = DedupConfig()
    keys = band_keys(union_signatures(texts, config), config)
    found = minhash_duplicates(texts, 0, config)
    assert len(found) > 20
    for i, j, _, _ in found:
        assert np.intersect1d(keys[i], keys[j]).size > 0
    texts_of_pair = pair_texts([{"role": "user", "content": "A  B"}], "C", "D")
    assert band_keys(union_signatures([texts_of_pair], config), config).shape == (1, config.bands)


def test_segments_fill_up_and_the_search_keeps_to_the_window(lake, monkeypatch):
    """Nights go into the newest segment until it is full; only the newest segments holding the
    window's pairs are searched, so an older paraphrase is no semantic candidate past the window."""
    monkeypatch.setattr(lake_index, "SEGMENT_VECTORS", 30)
    rng = random.Random(7)
    first = _night_one(rng, 20)  # a, z and 20 others: 22 pairs
    embedder = lake_embedder(lake)
    kept, _ = dedup_pairs(_frame(first), None, DedupConfig(), embed=embedder, run_id="n1")
    _commit(lake, kept, embedder)
    later = [pair(f"m{i:03d}", _sentence(rng), _sentence(rng, 20), _sentence(rng, 20)) for i in range(20)]
    _commit(lake, _frame(later[:5]), lake_embedder(lake))   # fits in the first segment (27 <= 30)
    _commit(lake, _frame(later[5:]), lake_embedder(lake))   # does not: a second segment
    index = KeptPairs(lake, DedupConfig(), embed=lake_embedder(lake), model="fake")
    segments = sorted(index.index_dir.glob("*.usearch"))
    assert [lake_index.KeptPairs._size(s) for s in segments] == [27, 15] and index.indexed() == 42
    paraphrase = _frame([pair("g", "Name the capital city of France?", "Paris.", "Lyon.")])  # of z, in segment 0
    everything = KeptPairs(lake, DedupConfig(semantic_window=0), embed=lake_embedder(lake), model="fake")
    assert "z" in set(everything.candidates(paraphrase)["pair_id"])
    recent = KeptPairs(lake, DedupConfig(semantic_window=10), embed=lake_embedder(lake), model="fake")
    assert recent._searched_files() == segments[1:]
    assert "z" not in set(recent.candidates(paraphrase)["pair_id"])
    assert KeptPairs(lake, DedupConfig(semantic_window=16), embed=lake_embedder(lake),
                     model="fake")._searched_files() == segments
