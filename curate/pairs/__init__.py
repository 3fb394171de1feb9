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
    _register_strategies()
    if strategy not in STRATEGIES:
        raise KeyError(f"unknown pair strategy {strategy!r} (known: {sorted(STRATEGIES)})")
    return STRATEGIES[strategy](prompts, candidates, scores, config, run_id=run_id)


def strategy_deriver(strategy: str) -> Callable | None:
    """The strategy's `derive` (see curate.pairs.derive), if it drives generation itself."""
    import importlib

    _register_strategies()
    module = importlib.import_module(STRATEGIES[strategy].__module__)
    return getattr(module, "derive", None)


def derive_rounds(strategy: str) -> int:
    """How many times the pipeline calls the strategy's `derive` (its DERIVE_ROUNDS, default 1)."""
    import importlib

    _register_strategies()
    return int(getattr(importlib.import_module(STRATEGIES[strategy].__module__), "DERIVE_ROUNDS", 1))


def _register_strategies() -> None:
    """Import every strategy module so that each registers itself."""
    from curate.pairs import code_evolution, gt, margin, reversal, short_to_long, stepwise  # noqa: F401


def check_pair_config(strategy: str, config: dict) -> str | None:
    """Why a [[pairs]] entry is invalid (unknown strategy or option), or None: a dry run of the
    strategy on empty tables, so a typo fails before any generation, not after."""
    from curate import schemas

    empty = {name: pl.from_arrow(schemas.table(name).arrow_schema().empty_table())
             for name in ("prompts", "candidates", "scores")}
    try:
        build_pairs(strategy, empty["prompts"], empty["candidates"], empty["scores"], config, run_id="check")
    except KeyError as exc:
        return str(exc.args[0]) if exc.args else str(exc)
    except ValueError as exc:
        return str(exc)
    return None
