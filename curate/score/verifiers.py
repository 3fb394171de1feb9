"""Verifier scorers: checks against a ground truth carried by the prompt."""

from __future__ import annotations

import json

from tqdm.auto import tqdm

from curate.score import ScoreItem, ScoreResult
from curate.score.verify.constraints import check_all
from curate.score.math_answer import verify_answer


class MathAnswerScorer:
    """1.0 when the final answer equals the reference (math-verify), else 0.0."""

    name = "math_verify"
    version = "1"
    tasks = frozenset({"math"})

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        results = []
        for item in tqdm(items, desc=f"score {self.name}", unit="candidate", leave=False):
            try:
                correct, answer = verify_answer(item.text, item.prompt["reference_answer"])
            except Exception as exc:  # a pathological text must not sink the batch
                results.append(ScoreResult(None, "error", {"error": f"{type(exc).__name__}: {exc}"[:500]}))
                continue
            detail = {"answer": answer, "reference": item.prompt["reference_answer"]}
            if correct is None:
                detail["reason"] = "no final answer found"
            results.append(ScoreResult(1.0 if correct else 0.0, "ok", detail))
        return results


class ConstraintScorer:
    """Fraction of the prompt's typed constraints that the response follows."""

    name = "constraints"
    version = "2"  # 2: the full IFEval library (english_lowercase also needs English text)
    tasks = frozenset({"instruction"})

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        results = []
        for item in tqdm(items, desc=f"score {self.name}", unit="candidate", leave=False):
            constraints = json.loads(item.prompt["constraints_json"])
            followed = check_all(item.text, constraints)
            detail = {"followed": followed, "types": [c["type"] for c in constraints]}
            results.append(ScoreResult(sum(followed) / len(followed), "ok", detail))
        return results
