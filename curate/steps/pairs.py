"""Pairs: every [[pairs]] strategy over the run's rows, deduplicated against the lake and committed
a batch of prompts at a time.

Entries whose options keep each prompt's pairs to that prompt's rows build batch by batch; the
others see the whole run at once and are built first. Each batch's pairs are deduplicated against
everything kept before them (earlier runs and earlier batches: the kept pair stays) and committed
with their drops, index rows and embeddings, so the step holds one batch's pairs at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial

import polars as pl

from curate.dedup import MODEL_NAME as EMBEDDING_MODEL
from curate.dedup import dedup_pairs
from curate.dedup.lake_index import KeptPairs
from curate.dedup.pairs import PairSignatures
from curate.lake import schemas
from curate.pairs import rule as pair_rule
from curate.pairs.derive import original_prompts
from curate.pairs.registry import run_options, strategy_named
from curate.progress import log
from curate.runtime.shards import ShardedEmbedder, sharded_signatures
from curate.steps.score import count_gates
from curate.steps.state import RunContext, RunState


def pairs(context: RunContext, state: RunState) -> None:
    embedder = ShardedEmbedder(context.shards, lookup=lambda hashes: context.lake.embeddings_of(EMBEDDING_MODEL, hashes),
                               batch_size=context.dedup.embed_batch_size)
    # only the kept pairs that can collide with a batch's are read (curate.dedup.lake_index)
    index = KeptPairs(context.lake, context.dedup, embed=embedder, model=EMBEDDING_MODEL)
    built = stored = dropped = added = 0
    for batch in _built_batches(context, state):
        batch = _one_per_pair_id(batch, state)
        # Pairs rebuilt from unchanged inputs have the same ids: drop those before dedup.
        known = context.lake.existing_ids("pairs", batch["pair_id"].to_list())
        fresh = batch.filter(~pl.col("pair_id").is_in(list(known)))
        kept, batch_dropped, batch_added = _dedup_and_commit(context, index, embedder, fresh, state)
        built, stored, dropped, added = (built + batch.height, stored + len(known), dropped + batch_dropped,
                                         added + batch_added)
        for strategy, count in kept.group_by("strategy").len().iter_rows():
            state.pairs_by_strategy[strategy] = state.pairs_by_strategy.get(strategy, 0) + count
    context.lake.merge_pair_stats_parts()  # one pair_stats part per group again (curate.lake.pair_facts)
    state.add("pairs_built", built)
    state.add("pairs_new", added)
    state.add("pairs_duplicates_dropped", dropped)
    log(f"pairs: {built} built, {stored} already stored, {dropped} dropped by dedup, {added} new")


def _one_per_pair_id(batch: pl.DataFrame, state: RunState) -> pl.DataFrame:
    """Two [[pairs]] entries of one strategy may pick the same pair (margin by an imported rating and
    by the verifier): one pair_id, one pair, the first entry's, whose details_json lists the others'
    evidence under `also_found_by`; counted as pairs_found_again."""
    again = batch.filter(pl.col("pair_id").is_duplicated())
    if again.is_empty():
        return batch
    evidence: dict[str, list[dict]] = {}
    firsts: set[str] = set()
    for row in again.iter_rows(named=True):
        if row["pair_id"] not in firsts:
            firsts.add(row["pair_id"])
            continue
        evidence.setdefault(row["pair_id"], []).append(
            {key: row[key] for key in ("scorer", "chosen_score", "rejected_score", "margin", "reason")})
    kept = batch.unique("pair_id", keep="first", maintain_order=True)
    details = [json.dumps({**json.loads(detail or "{}"), "also_found_by": evidence[pair_id]})
               if pair_id in evidence else detail for pair_id, detail in zip(kept["pair_id"], kept["details_json"])]
    state.add("pairs_found_again", sum(len(found) for found in evidence.values()))
    return kept.with_columns(pl.Series("details_json", details, pl.String))


def _built_batches(context: RunContext, state: RunState) -> Iterator[pl.DataFrame]:
    """The pairs of every entry, each on the configured scorer's current version, refusals counted:
    first those of the entries that see the whole run, then batch by batch those of the others, each
    frame in [[pairs]] order."""
    versions = context.engines.scorer_versions()
    entries = [(spec, strategy_named(spec.strategy), run_options(spec, versions)) for spec in context.config.pairs]
    whole = [entry for entry in entries if not entry[1].per_prompt(entry[2])]
    if whole:
        prompts, candidates = context.run_prompts_and_candidates(state)
        scores = context.lake.rows_where_in("scores", "candidate_id", state.candidate_ids)
        yield _concat([_build_one(*entry, prompts, candidates, scores, state) for entry in whole])
        del prompts, candidates, scores
    state.add("quality_checked", 0)
    state.add("quality_gated", 0)
    for prompts, candidates, scores in context.prompt_batches(state, with_scores=True):
        count_gates(state, scores)
        yield _concat([_build_one(*entry, prompts, candidates, scores, state)
                       for entry in entries if entry[1].per_prompt(entry[2])])


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [frame for frame in frames if not frame.is_empty()]
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


def _dedup_and_commit(context: RunContext, index: KeptPairs, embedder: ShardedEmbedder, fresh: pl.DataFrame,
                      state: RunState) -> tuple[pl.DataFrame, int, int]:
    """The fresh pairs that no kept pair duplicates, committed with the drops, the index rows and
    new embeddings; returns (kept, how many were dropped, pairs added)."""
    if fresh.is_empty():
        return fresh, 0, 0
    index.sync()
    # each text normalised and MinHashed once for the batch, the MinHashes computed in the shards
    signatures = PairSignatures(context.dedup, sign=partial(sharded_signatures, context.shards, context.dedup, 3))
    # the lake's semantic neighbours are looked up only for the pairs that pass exact and MinHash
    kept, drops = dedup_pairs(fresh, index.candidates(fresh, semantic=False, signatures=signatures), context.dedup,
                              embed=embedder, run_id=state.run_id, signatures=signatures,
                              semantic_kept=lambda new: index.semantic_candidates(new, signatures))
    added = context.lake.commit({"pairs": kept.to_arrow(), "dedup_drops": drops.to_arrow(),
                                 "pair_dedup_index": index.index_rows(kept, signatures),
                                 "embeddings": embedder.take_new_rows()})["pairs"]
    index.save()
    for reason, count in drops.group_by("reason").len().iter_rows():
        state.add(f"pairs_dropped_{reason}", count)
    return kept, drops.height, added
