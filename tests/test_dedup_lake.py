"""The dedup outputs round-trip through a real lake: drops, kept pairs and the embedding cache."""

from __future__ import annotations

import re
import zlib
from datetime import datetime, timezone

import numpy as np
import polars as pl

from curate.dedup import MODEL_NAME, DedupConfig, Embedder, dedup_pairs, pair_dedup_key
from curate.lake import schemas
from curate.lake.catalog import Lake

NOW = datetime(2024, 9, 1, tzinfo=timezone.utc)


class FakeModel:
    def __init__(self):
        self.texts = []

    def encode(self, texts, **kwargs):
        self.texts.extend(texts)
        out = np.zeros((len(texts), 16), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text):
                out[i, zlib.crc32(word.encode()) % 16] += 1.0
        return out


def pair(pair_id, prompt, chosen="Boil it for nine minutes.", rejected="Microwave it.", margin=1.0):
    messages = [{"role": "user", "content": prompt}]
    return {"pair_id": pair_id, "prompt_id": "p", "strategy": "margin", "params_json": "{}",
            "prompt": messages, "chosen": chosen, "rejected": rejected, "chosen_id": "c", "rejected_id": "r",
            "scorer": "s", "chosen_score": None, "rejected_score": None, "margin": margin, "reason": "test",
            "dedup_key": pair_dedup_key(messages, chosen, rejected), "run_id": "r", "created_at": NOW}


def lake_embedder(lake):
    def lookup(hashes):
        rows = lake.query("SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN "
                          "(SELECT unnest(?::VARCHAR[]))", [MODEL_NAME, hashes])
        return dict(rows.iter_rows())

    embedder = Embedder(lookup=lookup)
    embedder._model = FakeModel()
    return embedder


def run_night(lake, rows, run_id):
    embedder = lake_embedder(lake)
    new = pl.from_arrow(schemas.conform("pairs", rows))
    kept, drops = dedup_pairs(new, lake.read("pairs"), DedupConfig(), embed=embedder, run_id=run_id)
    lake.commit({"pairs": kept.to_arrow(), "dedup_drops": drops.to_arrow(), "embeddings": embedder.take_new_rows()})
    return kept, drops, embedder


def test_two_nights_through_the_lake(tmp_path):
    with Lake(tmp_path / "lake") as lake:
        kept, drops, first = run_night(lake, [pair("a", "How do I boil an egg?"), pair("b", "Boil an egg: how do I?"),
                                              pair("c", "How do I boil an egg ?", margin=0.5)], "night-1")
        assert kept["pair_id"].to_list() == ["a"]
        assert drops.select("item_id", "reason", "kept_id").sort("item_id").rows() == [
            ("b", "semantic", "a"), ("c", "minhash", "a")]
        assert lake.count("embeddings") == len(first._model.texts) == 4  # 2 prompts (c gone), chosen, rejected

        kept, drops, second = run_night(lake, [pair("d", "how do i boil an egg?", margin=5.0),
                                               pair("e", "How do I fry an egg?")], "night-2")
        assert kept["pair_id"].to_list() == ["e"]
        assert drops.select("item_id", "reason", "kept_id").rows() == [("d", "exact", "a")]
        assert second._model.texts == ["how do i fry an egg?"]  # everything else came from the lake
        assert lake.count("pairs") == 2 and lake.count("dedup_drops") == 3 and lake.count("embeddings") == 5
