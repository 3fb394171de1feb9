"""The scorer kinds a run can name: one registration line per kind (see curate/score/kind.py).

A new kind is one module with its `KIND` and one line in `BUILT_IN` (or `register_scorer(KIND)` at
run time, for a plugin or a test). An unknown kind is an error, never a default.
"""

from __future__ import annotations

from curate.score import judge, logprob, quality, reward, verifiers
from curate.score.kind import ScorerKind
from curate.score.verify import code

BUILT_IN = (
    quality.KIND,
    verifiers.MATH_KIND,
    verifiers.CONSTRAINTS_KIND,
    code.KIND,
    reward.KIND,
    judge.KIND,
    logprob.KIND,
)
SCORER_KINDS: dict[str, ScorerKind] = {kind.name: kind for kind in BUILT_IN}


def register_scorer(kind: ScorerKind) -> ScorerKind:
    """Add a kind (replacing one of the same name); returns it."""
    SCORER_KINDS[kind.name] = kind
    return kind


def scorer_kind(name: str) -> ScorerKind:
    if name not in SCORER_KINDS:
        raise ValueError(f"unknown scorer kind {name!r} ({', '.join(configurable_kinds())})")
    return SCORER_KINDS[name]


def configurable_kinds() -> list[str]:
    return [kind.name for kind in SCORER_KINDS.values() if kind.configurable]


def task_verifiers() -> dict[str, str]:
    """task -> the name of the kind that verifies its answers (math: math_verify, ...)."""
    return {kind.verifies: kind.name for kind in SCORER_KINDS.values() if kind.verifies}


def verifier_names() -> tuple[str, ...]:
    """The correctness verifiers, in registration order."""
    return tuple(kind.name for kind in SCORER_KINDS.values() if kind.verifies)

