"""A scorer kind with an option of its own: a candidate's length, in words or characters.

Its [[scorers]] entry is `kind = "length"` and `unit`; it needs no model, so shards build it where
they run (a worker process or a Ray worker imports this module to do so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from curate.options import option
from curate.score import ScoreItem, ScoreResult
from curate.score.kind import ScorerKind, ScorerOptions
from curate.score.registry import register_scorer


@dataclass
class LengthOptions(ScorerOptions):
    unit: Literal["words", "chars"] = option("words", help="what is counted")


class LengthScorer:
    version = "1"
    tasks = None

    def __init__(self, unit: str):
        self.unit = unit
        self.name = f"length:{unit}"

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        return [ScoreResult(float(len(item.text.split()) if self.unit == "words" else len(item.text)))
                for item in items]


KIND = register_scorer(ScorerKind("length", lambda entry, models: LengthScorer(entry.unit), LengthOptions))
