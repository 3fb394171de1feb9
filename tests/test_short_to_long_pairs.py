"""Short-to-long pairs (LongPO): chunking, chunk selection, derived short-context prompts, pairs of
the short-context answer over the long-context one; and long_context prompts from pydoc."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from curate import ids, schemas
from curate.ingest import validate_row
from curate.pairs import STRATEGIES, build_pairs, short_to_long
from curate.pairs.derive import DerivedPrompt, derived_prompt_rows
from curate.pairs.short_to_long import chunk_text, long_context_message, select_chunks
from curate.stdlib_docs import load_stdlib_docs

NOW = datetime(2024, 7, 8, tzinfo=timezone.utc)
STOP = {"the", "a", "an", "and", "of", "to", "in", "is", "are", "it", "its", "by", "for", "on", "with", "as",
        "that", "this", "do", "does", "why", "what", "how", "which", "from", "at", "or", "be", "twice"}


def bow_embed(texts):
    """Deterministic bag-of-words vectors (hashed words, stop words left out)."""
    vectors = np.zeros((len(texts), 512))
    for row, text in enumerate(texts):
        for word in re.findall(r"[a-z]+", text.lower()):
            if word not in STOP:
                vectors[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 512] += 1.0
    return vectors


def words(n, stem):
    return " ".join(f"{stem}{i}" for i in range(n))


# chunking ---------------------------------------------------------------------------------------
def test_long_context_message_is_the_ingest_template():
    assert long_context_message("The doc.", "What?") == "The doc.\n\nWhat?"


def test_paragraphs_pack_into_chunks_of_about_chunk_words():
    a, b, c, d = words(30, "a") + ".", words(20, "b") + ".", words(45, "c") + ".", words(10, "d") + "."
    context = f"{a}\n\n{b}\n  \n\n{c}\n\n{d}\n"
    assert chunk_text(context, 50) == [f"{a}\n\n{b}", c, d]  # 30 + 20 fit; + 45 does not; 45 + 10 > 50
    assert chunk_text(context, 60) == [f"{a}\n\n{b}", f"{c}\n\n{d}"]
    assert chunk_text(context, 1000) == [f"{a}\n\n{b}\n\n{c}\n\n{d}"]
    assert chunk_text(context, 50) == chunk_text(context, 50)  # deterministic
    assert chunk_text("", 50) == [] and chunk_text(" \n\n ", 50) == []
    # every word is kept, in order
    for size in (5, 17, 50):
        assert " ".join(chunk_text(context, size)).split() == context.split()


def test_an_over_long_paragraph_splits_on_sentences_then_words():
    s1, s2, s3 = words(8, "x") + ".", words(7, "y") + "?", words(6, "z") + "!"
    paragraph = f"{s1} {s2}\n{s3}"
    assert chunk_text(paragraph, 16) == [f"{s1} {s2}", s3]  # 8 + 7 = 15 fits; + 6 does not
    assert chunk_text(paragraph, 10) == [s1, s2, s3]
    # a sentence longer than chunk_words is cut every chunk_words words
    long_sentence = words(25, "w") + "."
    assert [len(c.split()) for c in chunk_text(long_sentence, 10)] == [10, 10, 5]
    # the pieces of a long paragraph pack with the next paragraph; pieces of one paragraph join by a space
    assert chunk_text(f"{s1} {s2}\n\n{s3}", 14) == [s1, f"{s2}\n\n{s3}"]
    with pytest.raises(ValueError):
        chunk_text("text", 0)


# chunk selection --------------------------------------------------------------------------------
TOPICS = [
    "Volcanoes form where magma from the mantle rises through the crust. Eruptions release lava, ash and "
    "gases, and the shape of a volcano depends on how runny its lava is.",
    "Bread dough rises because yeast ferments sugars and releases carbon dioxide. Kneading develops gluten, "
    "which traps the gas and gives the loaf its airy crumb after baking in a hot oven.",
    "Chess openings such as the Sicilian Defence and the Queen's Gambit aim to control the centre of the "
    "board, develop knights and bishops quickly and keep the king safe by castling early.",
    "Ocean tides rise and fall mainly because of the gravitational pull of the moon. The sun adds a smaller "
    "pull, so spring tides are higher when sun and moon line up, neap tides lower.",
]
TIDE_QUESTION = "Why do the ocean tides rise and fall with the moon?"


def test_select_chunks_with_a_deterministic_embedder():
    assert select_chunks(TIDE_QUESTION, TOPICS, 1, embed=bow_embed)[0] == [3]
    chunk_ids, similarities = select_chunks("How does yeast make bread dough rise in the oven?", TOPICS, 2,
                                            embed=bow_embed)
    assert chunk_ids == [1, 3]  # the two best, in document order ("rise" also meets the tides)
    assert similarities[0] > similarities[1] > 0
    vectors = bow_embed(["How does yeast make bread dough rise in the oven?", TOPICS[1]])
    cosine = vectors[0] @ vectors[1] / np.linalg.norm(vectors[0]) / np.linalg.norm(vectors[1])
    assert similarities[0] == round(float(cosine), 4)
    # ties go to the earlier chunk; top_k beyond the chunks takes them all
    same = lambda texts: np.ones((len(texts), 3))  # noqa: E731
    assert select_chunks("q", ["a", "b", "c"], 2, embed=same) == ([0, 1], [1.0, 1.0])
    assert select_chunks("q", ["a", "b"], 5, embed=same)[0] == [0, 1]
    assert select_chunks("q", [], 1, embed=same) == ([], [])


@pytest.mark.slow
def test_the_real_embedding_model_finds_the_paragraph_the_question_is_about():
    paragraphs = TOPICS + [
        "Photosynthesis lets plants turn sunlight, water and carbon dioxide into glucose and oxygen. It takes "
        "place in chloroplasts, whose green pigment chlorophyll absorbs red and blue light.",
        "The Roman Empire reached its greatest extent under Trajan. Roads, aqueducts and a common law held the "
        "provinces together, and Latin spread across western Europe.",
        "A bicycle's gears change the ratio between pedal turns and wheel turns. A low gear makes climbing "
        "hills easier, a high gear lets a rider go faster on flat roads.",
        "Honeybees communicate the direction and distance of flowers with a waggle dance. Worker bees collect "
        "nectar, which they turn into honey stored in wax combs inside the hive.",
    ]
    context = "\n\n".join(paragraphs)
    chunks = chunk_text(context, 40)
    assert chunks == paragraphs
    assert select_chunks(TIDE_QUESTION, chunks, 1)[0] == [3]
    assert select_chunks("How do bees tell each other where the flowers are?", chunks, 1)[0] == [7]
    assert select_chunks("What helps a cyclist climb a steep hill?", chunks, 1)[0] == [6]
    vectors = short_to_long.embed(["one text", "another"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# derive -----------------------------------------------------------------------------------------
def long_prompt(context, question, source="s", messages=None):
    row = {"task": "long_context", "context": context, "question": question}
    if messages is not None:
        row["messages"] = messages
    else:
        row["prompt"] = long_context_message(context, question)
    return validate_row(row, source, "r0", NOW)


def prompts_frame(rows, derived=()):
    frame = pl.from_arrow(schemas.conform("prompts", rows))
    if derived:
        frame = pl.concat([frame, pl.from_arrow(derived_prompt_rows(list(derived), "short_to_long", "r1"))])
    return frame


def empty(name):
    return pl.from_arrow(schemas.table(name).arrow_schema().empty_table())


CONTEXT = "\n\n".join(TOPICS)
CONFIG = {"chunk_words": 40, "n": 2, "max_tokens": 64}


def base_prompts():
    system = [{"role": "system", "content": "Answer from the document."},
              {"role": "user", "content": long_context_message(CONTEXT, TIDE_QUESTION)}]
    return [
        long_prompt(CONTEXT, TIDE_QUESTION, messages=system),
        long_prompt(TOPICS[0], "What is lava?"),  # a single chunk: nothing shorter to take
        validate_row({"prompt": CONTEXT + "\n\nSummarise.", "task": "chat"}, "s", "r0", NOW),
    ]


def test_derive_takes_the_most_relevant_chunks_as_the_short_context():
    rows = base_prompts()
    prompts = prompts_frame(rows)
    derived = short_to_long.derive(prompts, empty("candidates"), empty("scores"), CONFIG, embed=bow_embed)
    _, similarities = select_chunks(TIDE_QUESTION, TOPICS, 1, embed=bow_embed)
    assert derived == [DerivedPrompt(
        parent_prompt_id=rows[0]["prompt_id"],
        messages=[{"role": "system", "content": "Answer from the document."},
                  {"role": "user", "content": f"{TOPICS[3]}\n\n{TIDE_QUESTION}"}],
        task="long_context", fields={"context": TOPICS[3], "question": TIDE_QUESTION},
        generation={"n": 2, "max_tokens": 64},
        note={"chunk_ids": [3], "similarities": similarities, "short_words": len(TOPICS[3].split()),
              "long_words": len(CONTEXT.split()), "chunk_words": 40, "top_k": 1})]
    # deterministic, idempotent: the same derived prompt ids again
    again = short_to_long.derive(prompts, empty("candidates"), empty("scores"), CONFIG, embed=bow_embed)
    assert derived_prompt_rows(again, "short_to_long", "r2").column("prompt_id").to_pylist() == \
        derived_prompt_rows(derived, "short_to_long", "r1").column("prompt_id").to_pylist()
    # top_k 2: two chunks in document order; derived prompts in the input are not derived from again
    two = short_to_long.derive(prompts_frame(rows, derived), empty("candidates"), empty("scores"),
                               {**CONFIG, "top_k": 2}, embed=bow_embed)
    assert len(two) == 1 and two[0].note["chunk_ids"][1] == 3 and len(two[0].note["chunk_ids"]) == 2
    assert two[0].fields["context"] == "\n\n".join(TOPICS[i] for i in two[0].note["chunk_ids"])
    # top_k covering every chunk: the short context would be the long one
    assert short_to_long.derive(prompts, empty("candidates"), empty("scores"), {**CONFIG, "top_k": 4},
                                embed=bow_embed) == []


def test_config_errors_name_the_key_and_empty_frames_give_no_pairs():
    assert STRATEGIES["short_to_long"] is short_to_long.build
    args = (empty("prompts"), empty("candidates"), empty("scores"))
    for config in ({}, {"judge_scorer": "reward:rm", "top_k": 3}):
        pairs = short_to_long.build(*args, config, run_id="r")
        assert pairs.height == 0 and pairs.columns == schemas.table("pairs").column_names
        assert short_to_long.derive(*args, config, embed=bow_embed) == []
    assert build_pairs("short_to_long", *args, {}, "r").height == 0
    for config, message in [({"chunk_size": 10}, "'chunk_size'"), ({"top_k": 0}, "top_k"), ({"n": True}, "'?n'?"),
                            ({"max_tokens": "64"}, "max_tokens"), ({"judge_scorer": ""}, "judge_scorer")]:
        with pytest.raises(ValueError, match=message):
            short_to_long.build(*args, config, run_id="r")
        with pytest.raises(ValueError, match=message):
            short_to_long.derive(*args, config, embed=bow_embed)


# build ------------------------------------------------------------------------------------------
def candidates_frame(rows):
    """rows: (candidate_id, prompt_id, text, sample_index[, model])."""
    out = [{"candidate_id": cid, "prompt_id": pid, "model": rest[0] if rest else "gen@fp", "sampling_json": "{}",
            "sample_index": index, "seed": i, "text": text, "run_id": "r0", "created_at": NOW}
           for i, (cid, pid, text, index, *rest) in enumerate(rows)]
    return pl.from_arrow(schemas.conform("candidates", out))


def scores_frame(rows, scorer="reward:rm"):
    out = [{"score_id": ids.score_id(cid, scorer, "1"), "candidate_id": cid, "prompt_id": pid, "scorer": scorer,
            "scorer_version": "1", "score": score, "status": "ok", "run_id": "r0", "created_at": NOW}
           for cid, pid, score in rows]
    return pl.from_arrow(schemas.conform("scores", out))


def pair_set():
    rows = base_prompts()
    derived = short_to_long.derive(prompts_frame(rows), empty("candidates"), empty("scores"), CONFIG,
                                   embed=bow_embed)
    prompts = prompts_frame(rows, derived)
    long_id, short_id = rows[0]["prompt_id"], prompts["prompt_id"][-1]
    candidates = candidates_frame([
        ("L0", long_id, "The sun, mostly.", 0), ("L1", long_id, "Tides follow the moon's pull.", 1),
        ("L2", long_id, "unused: sample 2", 2), ("X0", long_id, "another model's answer", 0, "other@fp"),
        ("S0", short_id, "The moon's gravity pulls the ocean.", 0),
        ("S1", short_id, "Tides follow the moon's pull.", 1),   # the same as the long answer: no pair
    ])
    return rows, prompts, candidates, long_id, short_id


def test_build_pairs_the_short_context_answer_over_the_long_one():
    rows, prompts, candidates, long_id, short_id = pair_set()
    pairs = short_to_long.build(prompts, candidates, empty("scores"), CONFIG, run_id="run-x")
    assert pairs.height == 1
    row = pairs.to_dicts()[0]
    assert row["prompt_id"] == long_id
    assert row["prompt"] == rows[0]["messages"]  # the LONG context
    assert (row["chosen"], row["rejected"]) == ("The moon's gravity pulls the ocean.", "The sun, mostly.")
    assert (row["chosen_id"], row["rejected_id"]) == ("S0", "L0")
    assert row["scorer"] is None and row["margin"] is None and row["chosen_score"] is None
    assert row["pair_id"] == ids.pair_id("short_to_long", "S0", "L0", long_id)
    details = json.loads(row["details_json"])
    assert details == {"short_prompt_id": short_id, "sample_index": 0, "model": "gen@fp", "chunk_ids": [3],
                       "similarities": details["similarities"], "short_words": len(TOPICS[3].split()),
                       "long_words": len(CONTEXT.split()), "short_chars": len(TOPICS[3]),
                       "long_chars": len(CONTEXT)}
    assert len(details["similarities"]) == 1 and 0 < details["similarities"][0] <= 1
    assert "short-to-long" in row["reason"] and "sample 0" in row["reason"]
    schemas.conform("pairs", pairs.to_arrow())
    # a config other than the one the prompts were derived with does not claim them
    assert short_to_long.build(prompts, candidates, empty("scores"), {**CONFIG, "n": 1}, run_id="r").height == 0
    assert short_to_long.build(prompts, candidates, empty("scores"), {**CONFIG, "chunk_words": 41},
                               run_id="r").height == 0


def test_judge_scorer_drops_pairs_where_the_long_answer_scores_higher():
    rows, prompts, candidates, long_id, short_id = pair_set()
    candidates = candidates.with_columns(
        pl.when(pl.col("candidate_id") == "S1").then(pl.lit("The moon.")).otherwise(pl.col("text")).alias("text"))
    config = {**CONFIG, "judge_scorer": "reward:rm"}
    scores = scores_frame([("S0", short_id, 0.9), ("L0", long_id, 0.4), ("S1", short_id, 0.1), ("L1", long_id, 0.6)])
    pairs = short_to_long.build(prompts, candidates, scores, config, run_id="r")
    assert pairs["chosen_id"].to_list() == ["S0"]  # S1 (0.1) < L1 (0.6): dropped
    row = pairs.to_dicts()[0]
    assert (row["scorer"], row["chosen_score"], row["rejected_score"]) == ("reward:rm", 0.9, 0.4)
    assert row["margin"] == pytest.approx(0.5) and "reward:rm" in row["reason"]
    without_judge = short_to_long.build(prompts, candidates, scores, CONFIG, run_id="r")
    assert sorted(without_judge["chosen_id"].to_list()) == ["S0", "S1"]
    # an unjudged pair cannot be checked: dropped; equal scores are kept (margin 0)
    partial = scores_frame([("S0", short_id, 0.5), ("L0", long_id, 0.5), ("S1", short_id, 0.9)])
    kept = short_to_long.build(prompts, candidates, partial, config, run_id="r")
    assert kept["chosen_id"].to_list() == ["S0"] and kept["margin"].to_list() == [0.0]


# stdlib documentation prompts --------------------------------------------------------------------
def test_stdlib_docs_rows_are_deterministic_and_ask_about_a_function_they_document():
    rows = load_stdlib_docs()
    assert rows == load_stdlib_docs()
    assert len(rows) == 5
    modules = set()
    for row in rows:
        assert row["task"] == "long_context"
        match = re.fullmatch(r"According to the documentation above, what does `(\w+)\.(\w+)` do\?", row["question"])
        assert match, row["question"]
        module, function = match.groups()
        modules.add(module)
        assert re.search(rf"^    {function}\(", row["context"], re.MULTILINE), function
        assert f"module {module}" in row["context"]
        assert len(row["context"].split()) <= 1500
        assert row["messages"] == [{"role": "user", "content": long_context_message(row["context"], row["question"])}]
        assert "FILE" not in row["context"].splitlines()
        validate_row(row, "stdlib", "r0", NOW)  # a valid long_context prompt row
    assert len(modules) == 5
    short = load_stdlib_docs(limit=2, max_words=300)
    assert len(short) == 2 and all(len(r["context"].split()) <= 300 for r in short)


def test_stdlib_docs_prompts_derive_short_contexts():
    docs = load_stdlib_docs(limit=3)
    prompts = prompts_frame([validate_row(row, "stdlib", "r0", NOW) for row in docs])
    derived = short_to_long.derive(prompts, empty("candidates"), empty("scores"), {"chunk_words": 120},
                                   embed=bow_embed)
    assert len(derived) == 3
    for item in derived:
        assert item.note["short_words"] < item.note["long_words"]
        assert item.messages[-1]["content"].endswith(item.fields["question"])
