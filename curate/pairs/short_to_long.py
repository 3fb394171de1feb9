"""Short-to-long pairs (docs/methods.md §4, LongPO): the answer from a short context that holds what
the question needs, over the answer from the whole document, both to the long prompt.

Input: ORIGINAL prompts of task "long_context" whose task_fields_json has "context" (the
document) and "question".

Questions from chunks (`questions = "chunk"`, the default; LongPO's way). The document is cut
into chunks (`curate.pairs.chunks.chunk_spans`: spans of the document itself). derive, first
round: `question_chunks` chunks of at least `min_chunk_words` words, picked at random with the
prompt id as the seed, each become a question prompt (`curate.pairs.questions`: the model
writes a question the chunk answers; `question_samples` samples). Second round (the pipeline
calls derive again once those are generated: derive_rounds = 2): each question kept by
`parse_question` (discards are counted by reason) gives two prompts, the parent's messages with
the last user message replaced by `long_context_message(context, question)`: "short" with the
chunk as the context, "long" with the whole document. The short context holds what the answer
needs by construction.

Given questions (`questions = "given"`, or "both"): the `top_k` chunks most similar to the
row's own question (all-MiniLM-L6-v2; measured recall on a labelled set in the tests) make a
"retrieved" short prompt; the long side is the parent prompt itself.

build: for each short prompt made with this config and each sample index i < n: chosen = its
candidate i, rejected = candidate i of the same model on the long side. The pair's prompt is the
long one. The pairing rule (curate/pairs/rule.py): identical texts never pair; a candidate the
`quality` scorer gated is never a chosen, and a rejected only with `gated_rejected = true`
(default false: a degenerate long-context answer is too easy a negative); with `judge_scorer` both sides need
an ok score and the short answer must score strictly higher. details_json records the question, the
chunk (text, start/end offsets in the document, sha256, index), both prompt ids, both context
lengths.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from curate.audit import answer_checks
from curate.audit.verdicts import CONFIRMED, NO_SOURCE, REFUTED, UNCHECKABLE, Verdict, pair_details
from curate.ingest.validate import long_context_message
from curate.options import non_empty, option, options_dict, positive
from curate.pairs import rule
from curate.pairs.chunks import (  # noqa: F401  (public here since before)
    Chunk,
    chunk_spans,
    chunk_text,
    cosine,
    embed,
    embedder,
    lexical,
    select_chunks,
    top_k,
)
from curate.pairs.derive import (
    DerivedPrompt,
    DerivedPrompts,
    derived_info,
    original_prompts,
)
from curate.pairs.questions import (
    DEFAULT_MAX_WORDS,
    DISCARD_REASONS,
    parse_question,
    question_messages,
)
from curate.pairs.rows import PICK_SCHEMA, empty_pairs, finish_pairs, usable_scores
from curate.pairs.strategy import AuditCheck, Strategy, StrategyAudit

NAME = "short_to_long"
TASK = "long_context"
LEXICAL_WEIGHT = 1.0  # retrieval: cosine + this x the lexical score (curate.pairs.chunks.lexical)
PAIRING_ONLY = ("judge_scorer", "gated_rejected")  # not part of what derive makes

Embed = Callable[[list[str]], np.ndarray]


# config ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShortToLongOptions:
    questions: Literal["chunk", "given", "both"] = option(
        "chunk", help="chunk: the model writes a question per chunk; given: the row's own question, "
                      "answered from retrieved chunks; both")
    chunk_words: int = option(120, help="about this many words per chunk")
    min_chunk_words: int = option(30, help="a chunk asked about has at least this many words")
    question_chunks: int = option(2, help="chunks asked about per document (seeded by the prompt id)")
    question_samples: int = option(2, help="questions sampled per chunk")
    question_max_tokens: int = option(48, help="max_tokens of a question")
    question_temperature: float = option(0.7, help="temperature of a question, in [0, 2]")
    question_max_words: int = option(DEFAULT_MAX_WORDS, help="a longer question is discarded")
    top_k: int = option(1, help="given questions: chunks retrieved as the short context")
    lexical_weight: float = option(LEXICAL_WEIGHT, help="retrieval: cosine + this x the lexical score")
    n: int = option(1, help="answers sampled per short and per long prompt")
    max_tokens: int = option(256, help="max_tokens of an answer")
    judge_scorer: str | None = option(None, help="a scorer that must score the short answer strictly higher")
    gated_rejected: bool = option(False, help="a candidate gated by the quality scorer may be the rejected (off: too easy a negative)")

    def __post_init__(self) -> None:
        positive(self, "chunk_words", "min_chunk_words", "question_chunks", "question_samples", "question_max_tokens",
                 "question_max_words", "top_k", "n", "max_tokens")
        if not 0 <= self.question_temperature <= 2:
            raise ValueError(f"question_temperature must be a number in [0, 2], not {self.question_temperature!r}")
        if self.lexical_weight < 0:
            raise ValueError(f"lexical_weight must be a number >= 0, not {self.lexical_weight!r}")
        non_empty(self, "judge_scorer")


def _identity(options: ShortToLongOptions) -> dict:
    """The settings that decide what derive makes: a derived prompt made with others is not ours."""
    return {k: v for k, v in sorted(options_dict(options).items()) if k not in PAIRING_ONLY}


# derive ----------------------------------------------------------------------------------------
def _fields(task_fields_json: str | None) -> tuple[str, str] | None:
    try:
        fields = json.loads(task_fields_json) if task_fields_json else None
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    context, question = fields.get("context"), fields.get("question")
    if not (isinstance(context, str) and context.strip() and isinstance(question, str) and question.strip()):
        return None
    return context, question


def _with_last_user(messages: list[dict], content: str) -> list[dict] | None:
    out = [{"role": m["role"], "content": m["content"]} for m in messages]
    users = [i for i, m in enumerate(out) if m["role"] == "user"]
    if not users:
        return None
    out[users[-1]] = {"role": "user", "content": content}
    return out


def _words(text: str) -> int:
    return len(text.split())


def question_chunks(prompt_id: str, chunks: list[Chunk], options: ShortToLongOptions) -> list[Chunk]:
    """The chunks to ask about: `question_chunks` of those with at least `min_chunk_words`
    words, drawn at random seeded by the prompt id (the same on every run), in document order."""
    eligible = [c for c in chunks if c.words >= options.min_chunk_words]
    seed = int(hashlib.sha256(prompt_id.encode()).hexdigest()[:16], 16)
    picked = random.Random(seed).sample(eligible, min(options.question_chunks, len(eligible)))
    return sorted(picked, key=lambda c: c.index)


def derive(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, options: ShortToLongOptions,
           *, embed: Embed | None = None) -> DerivedPrompts:
    """Question prompts from chunks; short and long answer prompts for the questions already
    generated and kept; retrieved short prompts for given questions (module docstring)."""
    out = DerivedPrompts()
    rows = (original_prompts(prompts).filter(pl.col("task") == TASK).sort("prompt_id")
            .select("prompt_id", "messages", "task_fields_json"))
    documents = {}
    for prompt_id, messages, task_fields in rows.iter_rows():
        fields = _fields(task_fields)
        if fields is not None and any(m["role"] == "user" for m in messages):
            documents[prompt_id] = (messages, *fields, chunk_spans(fields[0], options.chunk_words))
    if options.questions in ("chunk", "both"):
        out += _question_prompts(documents, options)
        out += _answer_prompts(prompts, candidates, documents, options, out.counts)
    if options.questions in ("given", "both"):
        out += _retrieved_prompts(documents, options, embedder(embed))
    return out


def _question_prompts(documents: dict, options: ShortToLongOptions) -> list[DerivedPrompt]:
    derived = []
    for prompt_id, (_, context, _, chunks) in documents.items():
        for chunk in question_chunks(prompt_id, chunks, options):
            derived.append(DerivedPrompt(
                parent_prompt_id=prompt_id, messages=question_messages(chunk.text), task=TASK,
                generation={"n": options.question_samples, "max_tokens": options.question_max_tokens,
                            "temperature": options.question_temperature},
                note={"kind": "question", **chunk.record(), "long_words": _words(context),
                      "config": _identity(options)}))
    return derived


def _ours(prompts: pl.DataFrame, options: ShortToLongOptions, kind: str) -> pl.DataFrame:
    """derived_info rows of this strategy, made with this config, of one kind; note parsed."""
    info = derived_info(prompts).filter(pl.col("strategy") == NAME)
    identity = _identity(options)
    keep = [json.loads(note).get("kind") == kind and json.loads(note).get("config") == identity
            for note in info["note"]]
    return info.filter(pl.Series(keep, dtype=pl.Boolean)) if keep else info


def _answer_prompts(prompts: pl.DataFrame, candidates: pl.DataFrame, documents: dict, options: ShortToLongOptions,
                    counts: dict) -> list[DerivedPrompt]:
    asked = _ours(prompts, options, "question")
    if asked.is_empty():
        return []
    replies = (candidates.filter(pl.col("prompt_id").is_in(asked["prompt_id"].to_list()))
               .sort("prompt_id", "sample_index", "candidate_id")
               .select("prompt_id", "candidate_id", "text"))
    by_prompt: dict[str, list[tuple[str, str | None]]] = {}
    for prompt_id, candidate_id, text in replies.iter_rows():
        by_prompt.setdefault(prompt_id, []).append((candidate_id, text))
    derived = []
    for question_prompt_id, parent, note in asked.sort("prompt_id").select(
            "prompt_id", "parent_prompt_id", "note").iter_rows():
        if parent not in documents:
            continue
        messages, context, _, _ = documents[parent]
        note = json.loads(note)
        chunk_text_ = context[note["chunk_start"]:note["chunk_end"]]
        seen = set()
        for candidate_id, text in by_prompt.get(question_prompt_id, []):
            question, why = parse_question(text, chunk_text_, options.question_max_words)
            if question is not None and question.lower() in seen:
                question, why = None, "duplicate"
            counts[f"questions_{why}"] = counts.get(f"questions_{why}", 0) + 1
            if question is None:
                continue
            seen.add(question.lower())
            shared = {"question_prompt_id": question_prompt_id, "question_candidate_id": candidate_id,
                      **{k: note[k] for k in ("chunk_index", "chunk_start", "chunk_end", "chunk_sha256")},
                      "short_words": _words(chunk_text_), "long_words": _words(context),
                      "config": _identity(options)}
            for kind, ctx in (("short", chunk_text_), ("long", context)):
                derived.append(DerivedPrompt(
                    parent_prompt_id=parent, messages=_with_last_user(messages, long_context_message(ctx, question)),
                    task=TASK, fields={"context": ctx, "question": question},
                    generation={"n": options.n, "max_tokens": options.max_tokens},
                    note={"kind": kind, **shared}))
    return derived


def _retrieved_prompts(documents: dict, options: ShortToLongOptions, embed_fn: Embed) -> list[DerivedPrompt]:
    work = [(pid, doc) for pid, doc in documents.items() if len(doc[3]) > options.top_k]
    if not work:  # a document of top_k chunks or fewer: its short context would be the long one
        return []
    texts = [t for _, (_, _, question, chunks) in work for t in (question, *(c.text for c in chunks))]
    vectors = np.asarray(embed_fn(texts))  # one call for every prompt: batches well
    derived, at = [], 0
    for prompt_id, (messages, context, question, chunks) in work:
        block, at = vectors[at:at + 1 + len(chunks)], at + 1 + len(chunks)
        scores = cosine(block[0], block[1:])
        if options.lexical_weight:
            scores = scores + options.lexical_weight * lexical(question, [c.text for c in chunks])
        chunk_ids, similarities = top_k(scores, options.top_k)
        short = "\n\n".join(chunks[i].text for i in chunk_ids)
        derived.append(DerivedPrompt(
            parent_prompt_id=prompt_id, messages=_with_last_user(messages, long_context_message(short, question)),
            task=TASK, fields={"context": short, "question": question},
            generation={"n": options.n, "max_tokens": options.max_tokens},
            note={"kind": "retrieved", "chunk_ids": chunk_ids, "similarities": similarities,
                  "chunks": [chunks[i].record() for i in chunk_ids], "short_words": _words(short),
                  "long_words": _words(context), "config": _identity(options)}))
    return derived


# build -----------------------------------------------------------------------------------------
def build(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, options: ShortToLongOptions,
          run_id: str = "") -> pl.DataFrame:
    picks = _pairs(prompts, candidates, scores, options)
    if picks.is_empty():
        return empty_pairs()
    return finish_pairs(picks, NAME, options_dict(options), run_id)


def _samples(candidates: pl.DataFrame, prompt_ids: list[str], n: int) -> dict[str, dict[tuple[str, int], tuple]]:
    """prompt_id -> {(model, sample_index): (candidate_id, text)}, the smallest id where several."""
    rows = (candidates.filter(pl.col("prompt_id").is_in(prompt_ids) & pl.col("text").is_not_null()
                              & (pl.col("sample_index") < n))
            .sort("candidate_id").select("prompt_id", "model", "sample_index", "candidate_id", "text"))
    out: dict = {}
    for prompt_id, model, index, candidate_id, text in rows.iter_rows():
        out.setdefault(prompt_id, {}).setdefault((model, index), (candidate_id, text))
    return out


def _sides(prompts: pl.DataFrame, options: ShortToLongOptions) -> list[dict]:
    """One entry per short prompt: its long side's prompt id and messages, and the evidence."""
    rows = {r["prompt_id"]: r
            for r in prompts.select("prompt_id", "messages", "task_fields_json").iter_rows(named=True)}
    longs = {json.loads(note)["question_candidate_id"]: prompt_id
             for prompt_id, note in _ours(prompts, options, "long").select("prompt_id", "note").iter_rows()}
    sides = []
    for kind in ("short", "retrieved"):
        for short_id, parent, note in _ours(prompts, options, kind).sort("prompt_id").select(
                "prompt_id", "parent_prompt_id", "note").iter_rows():
            note = json.loads(note)
            long_id = longs.get(note.get("question_candidate_id")) if kind == "short" else parent
            if long_id not in rows or parent not in rows:
                continue
            long_context = (_fields(rows[long_id]["task_fields_json"]) or ("", ""))[0]
            short_context, question = _fields(rows[short_id]["task_fields_json"]) or ("", "")
            if kind == "short":
                evidence = {"question_from": "chunk", "question_candidate_id": note["question_candidate_id"],
                            "chunk": {"index": note["chunk_index"], "start": note["chunk_start"],
                                      "end": note["chunk_end"], "sha256": note["chunk_sha256"], "text": short_context}}
            else:
                evidence = {"question_from": "given", "chunk_ids": note["chunk_ids"],
                            "similarities": note["similarities"],
                            "chunks": [{**c, "text": long_context[c["chunk_start"]:c["chunk_end"]]}
                                       for c in note["chunks"]]}
            sides.append({"short_id": short_id, "long_id": long_id, "messages": rows[long_id]["messages"],
                          "question": question, "evidence": evidence, "short_words": _words(short_context),
                          "long_words": _words(long_context), "short_chars": len(short_context),
                          "long_chars": len(long_context)})
    return sides


def _pairs(prompts, candidates, scores, options) -> pl.DataFrame:
    sides = _sides(prompts, options)
    if not sides:
        return pl.DataFrame(schema=PICK_SCHEMA)
    samples = _samples(candidates, sorted({s[k] for s in sides for k in ("short_id", "long_id")}), options.n)
    judge = options.judge_scorer
    judged = (dict(usable_scores(scores, candidates, judge).select("candidate_id", "score").iter_rows())
              if judge else {})
    picks = []
    for side in sides:
        long_samples = samples.get(side["long_id"], {})
        for (model, index), (chosen_id, chosen) in sorted(samples.get(side["short_id"], {}).items()):
            if (model, index) not in long_samples:
                continue
            rejected_id, rejected = long_samples[(model, index)]
            chosen_score, rejected_score = (judged.get(chosen_id), judged.get(rejected_id)) if judge else (None, None)
            margin = chosen_score - rejected_score if chosen_score is not None and rejected_score is not None else None
            details = {"short_prompt_id": side["short_id"], "long_prompt_id": side["long_id"],
                       "question": side["question"], "sample_index": index, "model": model,
                       **side["evidence"], **{k: side[k] for k in ("short_words", "long_words", "short_chars",
                                                                    "long_chars")}}
            judged_text = (f"; {judge}: short {chosen_score:.3g} > long {rejected_score:.3g}"
                           if margin is not None else "")
            origin = ("a question the model wrote from that chunk" if side["evidence"]["question_from"] == "chunk"
                      else "the given question, chunk retrieved")
            picks.append({
                "prompt_id": side["long_id"],
                "prompt": [{"role": m["role"], "content": m["content"]} for m in side["messages"]],
                "chosen": chosen, "rejected": rejected, "chosen_id": chosen_id, "rejected_id": rejected_id,
                "scorer": judge, "chosen_score": chosen_score, "rejected_score": rejected_score, "margin": margin,
                "reason": (f"short-to-long: answer from the chunk ({side['short_words']} words) over the answer "
                           f"from the full document ({side['long_words']} words) to {origin}, sample {index}"
                           f"{judged_text}"),
                "details_json": json.dumps(details, sort_keys=True),
            })
    # The pairing rule: never identical, never a gated chosen (a gated rejected only with
    # gated_rejected); with a judge, both sides scored ok and the short answer strictly higher.
    return rule.enforce(pl.DataFrame(picks, schema=PICK_SCHEMA), rule.candidate_facts(prompts, candidates, scores),
                        gated_rejected=options.gated_rejected, scored=judge is not None)


def check_chunk_grounding(pair: dict, prompt: dict | None = None) -> Verdict:
    """The chosen invents no identifier, signature or number its chunk lacks and does not contradict
    a signature (the audit's answer_grounding)."""
    details = pair_details(pair)
    chunk = details.get("chunk")
    sources = [chunk.get("text")] if isinstance(chunk, dict) else []
    sources += [c.get("text") for c in details.get("chunks") or [] if isinstance(c, dict)]
    sources = [text for text in sources if isinstance(text, str)]
    if not sources:
        return Verdict("answer_grounding", UNCHECKABLE, {"reason": NO_SOURCE})
    source = "\n".join([*sources, str(details.get("question") or "")])
    found = answer_checks.invented_terms(pair["chosen"] or "", source)
    if any(found.values()):
        return Verdict("answer_grounding", REFUTED,
                       {**found, "reason": "the chosen states what its source text does not"})
    return Verdict("answer_grounding", CONFIRMED, {"source_chars": len(source)})


STRATEGY = Strategy(NAME, ShortToLongOptions, build, derive, derive_rounds=2,  # round 1 asks, round 2 answers
                    audit=StrategyAudit(checks=(AuditCheck("answer_grounding", check_chunk_grounding),)))

__all__ = ["DISCARD_REASONS", "NAME", "STRATEGY", "build", "chunk_text", "derive", "embed", "long_context_message",
           "question_chunks", "select_chunks"]
