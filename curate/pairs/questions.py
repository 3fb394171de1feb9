"""Questions written by the model from one chunk of a document (LongPO's instruction step).

`question_messages(chunk)` asks for one question the chunk answers, few-shot, as a chat: a
135M model copies the form of two worked turns far more reliably than it follows a bare
instruction. `parse_question(reply, chunk, max_words)` keeps the reply's first question or
says why it is discarded (one of DISCARD_REASONS).
"""

from __future__ import annotations

import re

DEFAULT_MAX_WORDS = 30
MIN_WORDS = 3
DISCARD_REASONS = ("empty", "not_a_question", "too_short", "too_long", "copied", "from_example", "unknown_name", "off_chunk",
                   "duplicate")

REQUEST = "Write one question that the text below answers. Reply with the question only.\n\nText:\n{text}"
# Worked turns from documentation the demo never asks about (and in pydoc's layout).
EXAMPLES = (
    ("    rgb_to_hsv(r, g, b)\n        Convert the color from RGB coordinates to HSV coordinates.\n\n"
     "    hsv_to_rgb(h, s, v)\n        Convert the color from HSV coordinates to RGB coordinates.",
     "What does rgb_to_hsv convert a color to?"),
    ("The queue module implements multi-producer, multi-consumer queues. It is especially useful in "
     "threaded programming when information must be exchanged safely between multiple threads. The "
     "Queue class in this module implements all the required locking semantics.",
     "When is the queue module especially useful?"),
)

# What the worked examples are about: a question naming one the chunk lacks was copied from them.
EXAMPLE_TERMS = frozenset({"rgb_to_hsv", "hsv_to_rgb", "rgb", "hsv", "color", "colour", "queue", "queues",
                           "producer", "consumer", "threaded", "locking"})
STOP_WORDS = frozenset(
    "a an the and or of to in on at by for with from as is are was were be been being it its this that these "
    "those what which who whom whose when where why how does do did can could should would will shall may "
    "might must not no yes if then than there their they them you your we our i me my he she his her one "
    "about into over under up down out all any each other some such only own same so too very just also "
    "text above below following given according documentation question answer use used using".split())

_LEAD = re.compile(r"^\s*(?:question\s*\d*\s*[:.)-]|q\s*\d*\s*[:.)-]|\d+\s*[.)]|[-*•]\s+)\s*", re.IGNORECASE)
_TERM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# a name as code writes it: with an underscore, or called
_CODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*_[A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*(?=\()")


def question_messages(chunk: str) -> list[dict]:
    """The few-shot chat that asks for a question about `chunk`."""
    messages = []
    for text, question in EXAMPLES:
        messages += [{"role": "user", "content": REQUEST.format(text=text)},
                     {"role": "assistant", "content": question}]
    return [*messages, {"role": "user", "content": REQUEST.format(text=chunk)}]


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def key_terms(text: str) -> set[str]:
    """Content words (identifiers kept whole, lower-cased): what a question is about."""
    return {t.lower() for t in _TERM.findall(text) if len(t) >= 3 and t.lower() not in STOP_WORDS}


def parse_question(reply: str | None, chunk: str, max_words: int = DEFAULT_MAX_WORDS) -> tuple[str | None, str]:
    """(question, "ok") or (None, reason): the first line of the reply, a leading "Question:"
    or list marker removed, cut after its first "?"; discarded when empty, without a "?",
    shorter than MIN_WORDS or longer than max_words words, copied verbatim from the chunk, or
    naming a term of the worked examples that the chunk lacks (the model copied an example),
    naming a function or identifier the chunk does not hold (a made-up name), or
    sharing no key term with the chunk (it would not be about this chunk)."""
    lines = [line for line in (reply or "").splitlines() if line.strip()]
    if not lines:
        return None, "empty"
    line = _LEAD.sub("", lines[0]).strip().strip("\"'`").strip()
    if not line:
        return None, "empty"
    if "?" not in line:
        return None, "not_a_question"
    question = line[:line.index("?") + 1].strip()
    words = len(question.split())
    if words < MIN_WORDS:
        return None, "too_short"
    if words > max_words:
        return None, "too_long"
    if _normal(question) in _normal(chunk):
        return None, "copied"
    terms, chunk_terms = key_terms(question), key_terms(chunk)
    if terms & EXAMPLE_TERMS - chunk_terms:
        return None, "from_example"
    if any(name.lower() not in chunk_terms for name in _CODE_NAME.findall(question)):
        return None, "unknown_name"
    if not terms & chunk_terms:
        return None, "off_chunk"
    return question, "ok"
