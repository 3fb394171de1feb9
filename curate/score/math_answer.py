"""Final answers of math solutions, checked against the reference with math-verify.

Extraction, in order: the last \\boxed{...}, the text after the last "the answer is", the last
number. Verification runs in a worker process with a wall-clock bound: math-verify's own
timeouts use signal.alarm, which fails off the main thread (Prefect runs tasks in threads), so
they are off and a stuck sympy call is ended by killing the worker instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

ANSWER_IS = re.compile(r"answer is\s*:?\s*(.+?)(?:\.\s|\.$|\n|$)", re.IGNORECASE)
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
DEFAULT_TIMEOUT_S = 10.0
WARM_UP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Extracted:
    text: str
    method: str  # boxed | answer_is | last_number


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, position = 0, start + len("\\boxed")
    for index in range(position, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[position + 1:index]
    return None


def extract_final_answer(text: str) -> Extracted | None:
    boxed = _last_boxed(text)
    if boxed and boxed.strip():
        return Extracted(boxed.strip(), "boxed")
    stated = ANSWER_IS.findall(text)
    if stated and stated[-1].strip():
        return Extracted(stated[-1].strip(), "answer_is")
    numbers = NUMBER.findall(text)
    if numbers:
        return Extracted(numbers[-1], "last_number")
    return None


def _warm_up() -> None:
    import math_verify  # noqa: F401


def _verify_in_worker(answer: str, reference: str) -> tuple[bool | None, str | None]:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns that timeouts are off
    gold = parse(reference, parsing_timeout=None)
    if not gold:
        raise ValueError(f"reference answer {reference!r} does not parse")
    predicted = parse(answer if "\\" not in answer else f"${answer}$", parsing_timeout=None)
    if not predicted:
        return None, None
    return bool(verify(gold, predicted, timeout_seconds=None)), str(predicted[-1])


class MathVerifier:
    """math-verify in a worker process; a call that overruns `timeout_s` kills the worker."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.timeout_s = timeout_s
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: never fork a process that may hold a vLLM engine and its threads
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            # Starting the worker and importing math-verify takes seconds, more when shards start
            # theirs at once: it must not count against the first answer's time bound.
            self._pool.submit(_warm_up).result(timeout=WARM_UP_TIMEOUT_S)
        return self._pool

    def _reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)

    def verify(self, answer: str, reference: str) -> tuple[bool | None, str | None]:
        """(correct, parsed answer); correct is None when the answer does not parse.
        Raises TimeoutError past the bound, ValueError for a reference that does not parse."""
        with self._lock:
            future = self._executor().submit(_verify_in_worker, answer, reference)
            try:
                return future.result(timeout=self.timeout_s)
            except FutureTimeout:
                self._reset()
                raise TimeoutError(f"math-verify took over {self.timeout_s:g}s") from None

    def close(self) -> None:
        self._reset()


_default_verifier: MathVerifier | None = None


def verify_answer(text: str, reference: str) -> tuple[bool | None, str | None]:
    """Extract the final answer of `text` and check it: (correct, parsed answer), (None, None)
    when the text states no answer. A convenience for notebooks; scorers own their verifier."""
    global _default_verifier
    extracted = extract_final_answer(text)
    if extracted is None:
        return None, None
    if _default_verifier is None:
        _default_verifier = MathVerifier()
    return _default_verifier.verify(extracted.text, reference)
