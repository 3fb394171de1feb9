"""Chunks of a long document and retrieval over them (short-to-long, docs/methods.md §4).

A chunk is a span of the document: `document[start:end]`, never a rewritten copy, so that a
pair can name the exact text its short context held (offsets and a hash) and a test can check
that an answer lies inside it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from curate.pairs.questions import key_terms
from curate.runtime.embedding_model import minilm

DEFAULT_CHUNK_WORDS = 120
SIMILARITY_DIGITS = 4

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\S+")

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    end: int
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def record(self) -> dict:
        """What a pair or derived prompt records of its chunk."""
        return {"chunk_index": self.index, "chunk_start": self.start, "chunk_end": self.end,
                "chunk_sha256": self.sha256}


def _spans(text: str, pattern: re.Pattern, start: int, end: int) -> list[tuple[int, int]]:
    """The pieces of text[start:end] between matches of `pattern`, outer whitespace trimmed."""
    out, at = [], start
    for match in pattern.finditer(text, start, end):
        out.append((at, match.start()))
        at = match.end()
    out.append((at, end))
    trimmed = []
    for a, b in out:
        piece = text[a:b]
        if piece.strip():
            a += len(piece) - len(piece.lstrip())
            b -= len(piece) - len(piece.rstrip())
            trimmed.append((a, b))
    return trimmed


def _word_pieces(text: str, start: int, end: int, chunk_words: int) -> list[tuple[int, int]]:
    words = list(_WORD.finditer(text, start, end))
    return [(words[i].start(), words[min(i + chunk_words, len(words)) - 1].end())
            for i in range(0, len(words), chunk_words)]


def _units(text: str, chunk_words: int) -> list[tuple[int, int]]:
    """Paragraph spans; a paragraph longer than chunk_words words as its sentences (a sentence
    longer still: every chunk_words words)."""
    units = []
    for a, b in _spans(text, _PARAGRAPH_BREAK, 0, len(text)):
        if len(text[a:b].split()) <= chunk_words:
            units.append((a, b))
            continue
        for s, e in _spans(text, _SENTENCE_END, a, b):
            if len(text[s:e].split()) <= chunk_words:
                units.append((s, e))
            else:
                units.extend(_word_pieces(text, s, e, chunk_words))
    return units


def chunk_spans(document: str, chunk_words: int = DEFAULT_CHUNK_WORDS) -> list[Chunk]:
    """Consecutive units (paragraphs, or sentences of an over-long paragraph) packed while the
    chunk stays within chunk_words words; each chunk is the document's own text from its first
    unit's start to its last unit's end."""
    if isinstance(chunk_words, bool) or not isinstance(chunk_words, int) or chunk_words < 1:
        raise ValueError(f"chunk_words must be a positive integer, not {chunk_words!r}")
    document = document or ""
    chunks, first, last, count = [], None, None, 0
    for a, b in _units(document, chunk_words):
        words = len(document[a:b].split())
        if first is not None and count + words > chunk_words:
            chunks.append(Chunk(len(chunks), first, last, document[first:last]))
            first, count = None, 0
        first = a if first is None else first
        last, count = b, count + words
    if first is not None:
        chunks.append(Chunk(len(chunks), first, last, document[first:last]))
    return chunks


def chunk_text(document: str, chunk_words: int = DEFAULT_CHUNK_WORDS) -> list[str]:
    """The texts of chunk_spans."""
    return [chunk.text for chunk in chunk_spans(document, chunk_words)]


# retrieval -------------------------------------------------------------------------------------
def embed(texts: list[str]) -> np.ndarray:
    """L2-normalised all-MiniLM-L6-v2 embeddings (one row per text), on CPU; the model loads once."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(minilm().encode(list(texts), batch_size=32, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False))


def cosine(question_vector: np.ndarray, chunk_vectors: np.ndarray) -> np.ndarray:
    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return x / np.where(norms == 0, 1.0, norms)

    return unit(chunk_vectors) @ unit(question_vector)


def lexical(question: str, chunks: list[str]) -> np.ndarray:
    """The IDF-weighted share of the question's key terms that each chunk contains, in [0, 1]:
    an identifier the question names (`dedent`) finds its entry where embeddings of a short
    question drift to the module's header."""
    terms = sorted(key_terms(question))
    if not terms or not chunks:
        return np.zeros(len(chunks))
    present = np.array([[t in key_terms(c) for t in terms] for c in chunks], dtype=np.float64)
    idf = np.log((len(chunks) + 1) / (present.sum(axis=0) + 0.5))
    return present @ idf / idf.sum() if idf.sum() > 0 else np.zeros(len(chunks))


def top_k(scores: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """The k best-scored rows (ties: the earlier row), in document order, with their scores
    rounded (so that ids built from them repeat across machines)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    chosen = sorted(order[:k])
    return chosen, [round(float(scores[i]), SIMILARITY_DIGITS) for i in chosen]


def embedder(embed_fn: Embed | None) -> Embed:
    # looked up when called, so that replacing the module's `embed` (a shared embedder) takes effect
    return embed_fn if embed_fn is not None else globals()["embed"]


def select_chunks(question: str, chunks: list[str], k: int, embed: Embed | None = None,
                  lexical_weight: float = 0.0) -> tuple[list[int], list[float]]:
    """The k chunks most similar to the question (cosine of embeddings, plus lexical_weight times
    `lexical`), as (indices in document order, their scores)."""
    if not chunks:
        return [], []
    vectors = np.asarray(embedder(embed)([question, *chunks]))
    scores = cosine(vectors[0], vectors[1:])
    if lexical_weight:
        scores = scores + lexical_weight * lexical(question, chunks)
    return top_k(scores, k)
