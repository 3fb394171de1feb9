"""Verifier scorers: checks against a ground truth carried by the prompt."""

from __future__ import annotations

import json


from curate.progress import progress
from curate.score import ScoreItem, ScoreResult
from curate.score.kind import ScorerKind
from curate.score.verify.constraints import evaluate_all
from curate.score.math_answer import DEFAULT_TIMEOUT_S, MathVerifier, extract_final_answer


class MathAnswerScorer:
    """1.0 when the final answer equals the reference (math-verify), else 0.0.

    A response with no extractable answer is wrong (0.0, reason recorded); a verification that
    overruns its time bound or fails is an error row, never a score.
    """

    name = "math_verify"
    version = "2"  # 2: boxed > "the answer is" > last number, time-bounded

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.verifier = MathVerifier(timeout_s)

    tasks = frozenset({"math"})

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        results = []
        try:
            for item in progress(items, len(items), f"score {self.name}", "candidate"):
                results.append(self._score_one(item))
        finally:
            self.verifier.close()
        return results

    def _score_one(self, item: ScoreItem) -> ScoreResult:
        reference = item.prompt["reference_answer"]
        extracted = extract_final_answer(item.text)
        if extracted is None:
            return ScoreResult(0.0, "ok", {"answer": None, "reference": reference, "reason": "no final answer found"})
        detail = {"extracted": extracted.text[:200], "method": extracted.method, "reference": reference}
        try:
            correct, parsed = self.verifier.verify(extracted.text, reference)
        except Exception as exc:  # a timeout or a pathological text must not sink the batch
            return ScoreResult(None, "error", {**detail, "error": f"{type(exc).__name__}: {exc}"[:500]})
        if correct is None:
            return ScoreResult(0.0, "ok", {**detail, "answer": None, "reason": "answer does not parse"})
        return ScoreResult(1.0 if correct else 0.0, "ok", {**detail, "answer": parsed})


class ConstraintScorer:
    """Fraction of the prompt's typed constraints that the response follows.

    detail_json: `followed` and `types` (one entry per constraint), `blank` (a blank response
    follows nothing, as in IFEval's harness) and `constraints`: each constraint's type, kwargs,
    verdict and measured value (the count, the detected language, the keywords found...).
    """

    name = "constraints"
    # 2: the full IFEval library (english_lowercase also needs English text)
    # 3: blank responses follow nothing; NLTK Punkt sentences and word_tokenize capital words
    version = "3"
    tasks = frozenset({"instruction"})

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        results, parsed = [], {}  # a prompt's constraints are parsed once for its candidates
        for item in progress(items, len(items), f"score {self.name}", "candidate"):
            text = item.prompt["constraints_json"]
            constraints = parsed[text] if text in parsed else parsed.setdefault(text, json.loads(text))
            verdicts = evaluate_all(item.text, constraints)
            followed = [v["followed"] for v in verdicts]
            detail = {"followed": followed, "types": [c["type"] for c in constraints],
                      "blank": not item.text.strip(), "constraints": verdicts}
            results.append(ScoreResult(sum(followed) / len(followed), "ok", detail))
        return results


MATH_KIND = ScorerKind("math_verify", lambda spec, models: MathAnswerScorer(), verifies="math")
CONSTRAINTS_KIND = ScorerKind("constraints", lambda spec, models: ConstraintScorer(), verifies="instruction")
