"""The pair strategies a [[pairs]] entry's `strategy` names: one registration line per module.

`strategy_named(name)`, `register(strategy)` (a test or a plugin adds one at run time),
`parse_pair_entry(mapping)` -> PairSpec (the strategy and its parsed options), `build_pairs`
(a strategy's build from a name and options or a plain table, for tests and benchmarks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from curate.options import parse_options
from curate.pairs import code_evolution, gt, margin, reversal, short_to_long, stepwise
from curate.pairs.strategy import Strategy

BUILT_IN = (
    margin.STRATEGY,
    gt.STRATEGY,
    reversal.STRATEGY,
    stepwise.STRATEGY,
    short_to_long.STRATEGY,
    code_evolution.STRATEGY,
)
STRATEGIES: dict[str, Strategy] = {s.name: s for s in BUILT_IN}


@dataclass(frozen=True)
class PairSpec:
    """One [[pairs]] entry: the strategy's name, its options, and the entry as written (paths
    resolved): the runs table records that, and a `scorer` the entry names explicitly is pinned to
    the scorer's current version at build time (`run_options`)."""
    strategy: str
    options: Any
    given: Mapping = field(default_factory=dict)


def register(strategy: Strategy) -> Strategy:
    """Add a strategy (replacing one of the same name)."""
    STRATEGIES[strategy.name] = strategy
    return strategy


def strategy_named(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown pair strategy {name!r} (known: {', '.join(sorted(STRATEGIES))})")
    return STRATEGIES[name]


def options_for(name: str, values: Mapping) -> Any:
    """The strategy's options from a table (no `strategy` key); ValueError "<name>: ..."."""
    return parse_options(strategy_named(name).options, values, name)


def parse_pair_entry(entry: Mapping, base_dir: Path | None = None) -> PairSpec:
    """A [[pairs]] table: `strategy` and its options. Path options (`option(..., path=True)`)
    given relative are resolved against `base_dir` (the config file's folder)."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("strategy"), str):
        raise ValueError("a [[pairs]] entry needs a `strategy`")
    name = entry["strategy"]
    values = {k: v for k, v in entry.items() if k != "strategy"}
    paths = {f.name for f in dataclasses.fields(strategy_named(name).options) if f.metadata.get("path")}
    for key in paths & set(values):
        if base_dir is not None and isinstance(values[key], str) and not Path(values[key]).is_absolute():
            values[key] = str((base_dir / values[key]).resolve())
    return PairSpec(name, options_for(name, values), values)


def pair_entry_dict(spec: PairSpec) -> dict:
    """The entry as written, flat: {"strategy": ..., option: value, ...} (the runs table)."""
    return {"strategy": spec.strategy, **spec.given}


def run_options(spec: PairSpec, versions: Mapping[str, str]) -> Any:
    """The options a run builds with: when the entry names a `scorer` the run has configured and
    pins no `scorer_version`, the scorer's current version."""
    options = spec.options
    scorer = spec.given.get("scorer")
    if scorer in versions and getattr(options, "scorer_version", "") is None:
        return dataclasses.replace(options, scorer_version=versions[scorer])
    return options


def build_pairs(name: str, prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame,
                options: Any, run_id: str = "") -> pl.DataFrame:
    """The strategy's pairs; `options` its options or a plain table of them."""
    if isinstance(options, Mapping):
        options = options_for(name, options)
    return strategy_named(name).build(prompts, candidates, scores, options, run_id)


def derive_prompts(name: str, prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame,
                   options: Any, **kwargs) -> list:
    """The strategy's derived prompts (none for a strategy that derives nothing); `options` as in
    build_pairs."""
    strategy = strategy_named(name)
    if isinstance(options, Mapping):
        options = options_for(name, options)
    return strategy.derive(prompts, candidates, scores, options, **kwargs) if strategy.derive else []
