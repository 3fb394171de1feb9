"""What a pair strategy module declares: `STRATEGY = Strategy(name, options, build, ...)`.

`options` is a frozen dataclass of the strategy's options (curate.options: parsed from a [[pairs]]
entry with the run config's strictness); `build(prompts, candidates, scores, options, run_id)`
returns rows of the pairs table (curate.pairs.rows.finish_pairs); a strategy that drives
generation also has `derive(prompts, candidates, scores, options)` (curate.pairs.derive), called
`derive_rounds` times. The registry (curate.pairs.registry) collects the modules' STRATEGY.

`audit` says what the pair audit (curate.audit.checks) does differently for the strategy's pairs:
checks of its own (`AuditCheck`: claim-level, or answer-level when named `answer_*`), the shared
checks that do not apply to a pair and why, the constraints its pairs' prompts state, ties it
expects. A record travels to shard workers by its module and name (curate.declarations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from curate.audit.verdicts import Verdict
from curate.declarations import by_declaration


@dataclass(frozen=True)
class AuditCheck:
    """A check of one strategy's pairs. Its verdicts are `pair_audits` rows named `name`; a name the
    shared checks use (answer_grounding) replaces the shared check for these pairs."""
    name: str
    check: Callable[[dict, dict | None], Verdict]  # (the pair's row, its prompt's row or None) -> a verdict
    # True: a confirmed verdict is evidence that the chosen is better (or, for an answer_* check, a sound
    # answer); False: a necessary condition, that can only refute (curate.lake.audit_facts)
    confirms: bool = False


def _nothing(pair: dict) -> Mapping[str, str]:
    return {}


def _never(pair: dict) -> bool:
    return False


@dataclass(frozen=True)
class StrategyAudit:
    checks: tuple[AuditCheck, ...] = ()
    # pair -> {name of a shared check: why it does not apply to this pair}: that check says uncheckable
    waives: Callable[[dict], Mapping[str, str]] = _nothing
    # pair -> the constraints its prompt states, when they are not its prompt row's own (None: none valid)
    stated_constraints: Callable[[dict], list | None] | None = None
    # pair -> True when equal scores are what it expects (it prefers by something else: faster code)
    tie_by_design: Callable[[dict], bool] = _never
    # True when the pairs' evidence is a ground truth: a tie on the task's verifier refutes them
    ground_truth: bool = False


@dataclass(frozen=True)
class Strategy:
    name: str
    options: type
    build: Callable  # (prompts, candidates, scores, options, run_id) -> pairs frame
    derive: Callable | None = None  # (prompts, candidates, scores, options) -> derived prompts
    derive_rounds: int = 1
    # True when, under these options, one prompt's pairs need no other prompt's rows: the pairs step
    # may then build them prompt batch by prompt batch. Options that look across prompts (margins
    # standardised over the run, a top fraction) and strategies whose derived prompts point at
    # parents need the whole run at once.
    per_prompt: Callable[[Any], bool] = lambda options: False
    audit: StrategyAudit = field(default_factory=StrategyAudit)

    def __reduce__(self):
        return by_declaration(self)
