"""Final answers of math solutions, checked against the reference with math-verify."""

from __future__ import annotations

import logging
import re

from math_verify import parse, verify

# math-verify warns on every call that its timeouts are off; they are off on purpose (below).
logging.getLogger("math_verify").setLevel(logging.ERROR)

ANSWER_IS = re.compile(r"answer is\s*:?\s*(.+?)(?:\.\s|\.$|\n|$)", re.IGNORECASE)
# math-verify's own timeouts use signal.alarm, which fails off the main thread (Prefect
# runs tasks in worker threads), so they are off; long inputs are cut to bound the work.
MAX_TAIL_CHARS = 2_000


def extract_final_answer(text: str) -> str:
    """The span that states the answer: after the last "The answer is", else the whole tail."""
    matches = ANSWER_IS.findall(text)
    if matches:
        return matches[-1].strip()
    return text[-MAX_TAIL_CHARS:]


def parse_answer(text: str) -> list:
    return parse(text, parsing_timeout=None)


def verify_answer(text: str, reference_answer: str) -> tuple[bool | None, str | None]:
    """(correct, extracted answer); correct is None when no answer can be found in the text."""
    predicted = parse_answer(extract_final_answer(text))
    if not predicted:
        return None, None
    gold = parse_answer(reference_answer)
    if not gold:
        raise ValueError(f"reference answer {reference_answer!r} does not parse")
    return bool(verify(gold, predicted, timeout_seconds=None)), str(predicted[-1])
