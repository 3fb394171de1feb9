"""What a pair strategy module declares: `STRATEGY = Strategy(name, options, build, ...)`.

`options` is a frozen dataclass of the strategy's options (curate.options: parsed from a [[pairs]]
entry with the run config's strictness); `build(prompts, candidates, scores, options, run_id)`
returns rows of the pairs table (curate.pairs.rows.finish_pairs); a strategy that drives
generation also has `derive(prompts, candidates, scores, options)` (curate.pairs.derive), called
`derive_rounds` times. The registry (curate.pairs.registry) collects the modules' STRATEGY.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
