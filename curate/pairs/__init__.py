"""Pair strategies: each module has `build(prompts, candidates, scores, config) -> pairs`.

Shared here: the columns every pair row carries (see schemas/pairs.toml) and the registry
that the run config's `strategy` names select from.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

STRATEGIES: dict[str, Callable[..., pl.DataFrame]] = {}


def register(name: str):
    def add(build: Callable[..., pl.DataFrame]) -> Callable[..., pl.DataFrame]:
        STRATEGIES[name] = build
        return build

    return add


def build_pairs(strategy: str, prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame,
                config: dict, run_id: str) -> pl.DataFrame:
    from curate.pairs import margin  # noqa: F401  (registers itself)

    if strategy not in STRATEGIES:
        raise KeyError(f"unknown pair strategy {strategy!r} (known: {sorted(STRATEGIES)})")
    return STRATEGIES[strategy](prompts, candidates, scores, config, run_id=run_id)
