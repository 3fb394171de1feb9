"""MinHash signatures computed once per text (PartSignatures, PairSignatures) against rensa's own path:
the union of a pair's parts hashed as one set, and RMinHashLSH for candidates. The same union
signatures, the same band keys (the ones the lake stores) and the same dedup decisions."""

from __future__ import annotations

import random
import re
import unicodedata

import numpy as np
import polars as pl
import pytest
from rensa import RMinHash

from curate.dedup import DedupConfig, dedup_pairs, minhash_duplicates, pair_texts, shingles
from curate.dedup.lake_index import KeptPairs, band_keys, union_signatures
from curate.dedup.minhash import PartSignatures, words
from curate.dedup.pairs import PairSignatures
from curate.ids import normalise_text
from curate.lake import schemas
from curate.lake.catalog import Lake
from tests.test_dedup_lake import pair
from tests.test_dedup_minhash import _one_candidate_at_a_time, corpus

ODD = ["Ｆｕｌｌｗｉｄｔｈ letters and the ﬁrst ligature", "Straße, café and cafe\u0301", "ΣΊΣΥΦΟΣ ὀδυσσεύς",
       "tab\tnew\nline\x1cseparator\x0bvertical", "snake_case words_with_underscores 42 3.14",
       "İstanbul DİYARBAKIR", "emoji 🙂 between words", ""]


def _rensa_union(texts, config):
    """The union signature as it was computed: one MinHash of all parts' tagged shingles."""
    sets = [[s for p, part in enumerate(t) for s in shingles(part, config.shingle_size, f"{p}|")] for t in texts]
    return np.array([h.digest() for h in RMinHash.from_token_sets(sets, config.num_perm, config.minhash_seed)],
                    dtype=np.uint64)


def _triples(seed, n_prompts=60):
    """Pairs as the pairs step makes them: several per prompt (shared prompts and answers), light edits
    of earlier pairs (near duplicates), hard negatives and a few non-ASCII texts."""
    rng = random.Random(seed)
    texts, _, _ = corpus(seed, n_base=200, n_dups=60, n_hard=40)
    items = []
    for k in range(n_prompts):
        prompt = " ".join(rng.choice(texts).split()[:12]) + "?"
        answers = rng.sample(texts, 3)
        items += [(prompt, answers[0], answers[1]), (prompt, answers[0], answers[2]), (prompt, answers[2], answers[1])]
    for _ in range(120):
        prompt, chosen, rejected = rng.choice(items)
        edited = chosen.split()
        edited[rng.randrange(len(edited))] = rng.choice(edited)
        items.append((prompt, " ".join(edited), rejected if rng.random() < 0.8 else rng.choice(texts)))
    items += [(odd, rng.choice(ODD), rng.choice(texts)) for odd in ODD]
    rng.shuffle(items)
    return items


def test_ascii_words_are_the_regex_words():
    rng = random.Random(0)
    samples = ["".join(chr(rng.randrange(128)) for _ in range(rng.randrange(60))) for _ in range(2000)]
    for text in samples + ODD:
        assert words(text) == re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())


def test_remembered_normalisation_is_normalise_text():
    rng = random.Random(1)
    samples = ["".join(chr(rng.randrange(128)) for _ in range(rng.randrange(60))) for _ in range(2000)]
    signatures = PairSignatures(DedupConfig())
    for text in samples + ODD + [chr(c) * 2 + "a b" for c in range(128)]:
        assert signatures.normalise(text) == normalise_text(text)
        assert signatures.normalise(text) == normalise_text(text)  # remembered


@pytest.mark.parametrize("seed", [0, 1])
def test_union_signatures_and_band_keys_are_unchanged(seed):
    config = DedupConfig()
    items = _triples(seed)
    new = union_signatures(items, config)
    assert np.array_equal(new.astype(np.uint64), _rensa_union(items, config))
    assert np.array_equal(band_keys(new, config), band_keys(_rensa_union(items, config), config))
    signatures = PartSignatures(config, 3)
    shared = union_signatures(items[::2], config, signatures)  # texts already signed are reused
    assert np.array_equal(union_signatures(items, config, signatures), new)
    assert np.array_equal(shared, new[::2])


@pytest.mark.parametrize("n_kept", [0, 25])
def test_decisions_equal_rensas_lsh_on_pairs_and_single_texts(n_kept):
    config = DedupConfig()
    items = _triples(2)
    found = minhash_duplicates(items, n_kept, config)
    assert found == _one_candidate_at_a_time(items, n_kept, config) and len(found) > 50
    singles = [chosen for _, chosen, _ in items]
    assert minhash_duplicates(singles, n_kept, config) == _one_candidate_at_a_time(singles, n_kept, config)
    other = DedupConfig(num_perm=120, bands=40, minhash_threshold=0.4)  # 3 rows per band
    assert minhash_duplicates(items, n_kept, other) == _one_candidate_at_a_time(items, n_kept, other)


def test_signatures_shared_across_calls_give_the_same_decisions():
    config = DedupConfig()
    items = _triples(3)
    signatures = PartSignatures(config, 3)
    union_signatures(items[40:], config, signatures)  # as the lake probe does first, for the new pairs
    assert minhash_duplicates(items, 40, config, signatures) == minhash_duplicates(items, 40, config)
    with pytest.raises(ValueError):
        minhash_duplicates(items, 0, DedupConfig(shingle_size=2), signatures)
    with pytest.raises(ValueError):
        minhash_duplicates([chosen for _, chosen, _ in items], 0, config, signatures)


def _frame(items, start=0):
    rows = [pair(f"p{k:04d}", prompt, chosen, rejected, margin=float(k % 7)) for k, (prompt, chosen, rejected)
            in enumerate(items, start)]
    return pl.from_arrow(schemas.conform("pairs", rows))


def test_pair_signatures_give_pair_texts_and_the_pipelines_decisions(tmp_path):
    config = DedupConfig(semantic=False)
    items = _triples(4)
    first, second = _frame(items[:150]), _frame(items[150:], 150)
    signatures = PairSignatures(config)
    several = second.head(3).with_columns(pl.col("prompt").list.concat(pl.col("prompt")))  # two messages each
    for pairs in (second, several):
        assert signatures.texts(pairs) == [pair_texts(*row) for row in pairs.select("prompt", "chosen", "rejected").iter_rows()]
    with Lake(tmp_path / "lake") as lake:
        index = KeptPairs(lake, config)
        kept, _ = dedup_pairs(first, None, config)
        lake.commit({"pairs": kept.to_arrow(), "pair_dedup_index": index.index_rows(kept)})
        probed = index.candidates(second, signatures=signatures)
        assert probed.height > 0
        by_batch = dedup_pairs(second, probed, config, run_id="n2", signatures=signatures)
        by_lake = dedup_pairs(second, lake.read("pairs"), config, run_id="n2")
        assert by_batch[0]["pair_id"].to_list() == by_lake[0]["pair_id"].to_list()
        assert (by_batch[1].drop("created_at").sort("item_id").rows()
                == by_lake[1].drop("created_at").sort("item_id").rows())
        assert by_batch[1].height > 10
        rows = index.index_rows(by_batch[0], signatures)
        assert rows["band_keys"].to_pylist() == index.index_rows(by_batch[0])["band_keys"].to_pylist()
        expected = band_keys(_rensa_union(signatures.texts(by_batch[0]), config), config)
        assert np.array_equal(np.array(rows["band_keys"].to_pylist()), expected)
