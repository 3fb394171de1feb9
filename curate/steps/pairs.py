"""Pairs: every [[pairs]] strategy over the run's rows, then dedup against the lake, in one commit."""

from __future__ import annotations

import time

import polars as pl

from curate import schemas
from curate.dedup import MODEL_NAME as EMBEDDING_MODEL
from curate.dedup import dedup_pairs
from curate.dedup.lake_index import KeptPairs
from curate.pairs import rule as pair_rule
from curate.pairs.derive import original_prompts
from curate.pairs.registry import run_options, strategy_named
from curate.progress import log
from curate.shards import ShardedEmbedder
from curate.steps.score import count_gates
from curate.steps.state import RunContext, RunState


def pairs(context: RunContext, state: RunState) -> None:
    began = time.monotonic()
    built = _build(context, state)
    # Two [[pairs]] entries of one strategy may pick the same pair (e.g. margin by an imported
    # rating and by the verifier): one pair_id, one pair (the first entry's).
    built = built.unique("pair_id", keep="first", maintain_order=True)
    # Pairs rebuilt from unchanged inputs have the same ids: drop those before dedup.
    stored = context.lake.existing_ids("pairs", built["pair_id"].to_list())
    fresh = built.filter(~pl.col("pair_id").is_in(list(stored)))
    kept, dropped, added = _dedup_and_commit(context, fresh, state)
    state.add("pairs_built", built.height)
    state.add("pairs_new", added)
    state.add("pairs_duplicates_dropped", dropped)
    for strategy, count in kept.group_by("strategy").len().iter_rows():
        state.pairs_by_strategy[strategy] = state.pairs_by_strategy.get(strategy, 0) + count
    log(f"pairs: {built.height} built, {len(stored)} already stored, {dropped} dropped by dedup, "
        f"{added} new")
    state.took("pairs", time.monotonic() - began)


def _build(context: RunContext, state: RunState) -> pl.DataFrame:
    """Every strategy's pairs, each on the configured scorer's current version, refusals counted.

    Strategies whose options keep each prompt's pairs to that prompt's rows build prompt batch by
    prompt batch; the others see the whole run at once. The result is in [[pairs]] order."""
    versions = context.engines.scorer_versions()
    entries = [(spec, strategy_named(spec.strategy), run_options(spec, versions)) for spec in context.config.pairs]
    built: list[list[pl.DataFrame]] = [[] for _ in entries]
    state.add("quality_checked", 0)
    state.add("quality_gated", 0)
    for prompts, candidates in context.prompt_batches(state):
        scores = context.lake.rows_where_in("scores", "candidate_id", candidates["candidate_id"].to_list())
        count_gates(state, scores)
        for index, (spec, strategy, options) in enumerate(entries):
            if strategy.per_prompt(options):
                built[index].append(_build_one(spec, strategy, options, prompts, candidates, scores, state))
    if any(not strategy.per_prompt(options) for _, strategy, options in entries):
        prompts, candidates = context.run_prompts_and_candidates(state)
        scores = context.lake.rows_where_in("scores", "candidate_id", state.candidate_ids)
        for index, (spec, strategy, options) in enumerate(entries):
            if not strategy.per_prompt(options):
                built[index].append(_build_one(spec, strategy, options, prompts, candidates, scores, state))
    frames = [frame for frames in built for frame in frames if not frame.is_empty()]
    return pl.concat(frames) if frames else pl.from_arrow(schemas.table("pairs").arrow_schema().empty_table())


def _build_one(spec, strategy, options, prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame,
               state: RunState) -> pl.DataFrame:
    """One [[pairs]] entry over some prompts (derived ones only for the strategy that made them)."""
    seen = prompts if strategy.derive else original_prompts(prompts)
    with pair_rule.counting() as refused:
        pairs = strategy.build(seen, candidates, scores, options, state.run_id)
    for reason, count in refused.items():
        state.add(f"pairs_refused_{reason}", count)
        by_reason = state.refused_by_strategy.setdefault(spec.strategy, {})
        by_reason[reason] = by_reason.get(reason, 0) + count
    return pairs


def _dedup_and_commit(context: RunContext, fresh: pl.DataFrame, state: RunState
                      ) -> tuple[pl.DataFrame, int, int]:
    """The fresh pairs that no kept pair (of this run or the lake) duplicates, committed with the
    drops, the index rows and new embeddings; returns (kept, how many were dropped, pairs added)."""
    embedder = ShardedEmbedder(context.shards, lookup=lambda hashes: context.lake.embeddings_of(EMBEDDING_MODEL, hashes),
                               batch_size=context.dedup.embed_batch_size)
    # only the kept pairs that can collide with these are read (curate.dedup.lake_index)
    index = KeptPairs(context.lake, context.dedup, embed=embedder, model=EMBEDDING_MODEL)
    if fresh.height:
        index.sync()
    kept, drops = (dedup_pairs(fresh, index.candidates(fresh), context.dedup, embed=embedder, run_id=state.run_id)
                   if fresh.height else (fresh, None))
    tables = {"pairs": kept.to_arrow()}
    if drops is not None:
        tables.update(dedup_drops=drops.to_arrow(), pair_dedup_index=index.index_rows(kept),
                      embeddings=embedder.take_new_rows())
    added = context.lake.commit(tables)["pairs"]
    index.save()
    dropped = drops.height if drops is not None else 0
    for reason, count in (drops.group_by("reason").len().iter_rows() if dropped else []):
        state.add(f"pairs_dropped_{reason}", count)
    return kept, dropped, added
