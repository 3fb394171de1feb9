"""Score: the quality gates, then every configured scorer, on the run's candidates not yet scored."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
import pyarrow as pa

from curate.lake import schemas
from curate.progress import log
from curate.runtime.shards import Done, Pending, score_shard, split_frame
from curate.score import newest_scores, score_candidates, unscored
from curate.score.quality import NAME as QUALITY
from curate.score.registry import scorer_kind
from curate.steps.state import RunContext, RunState


def score(context: RunContext, state: RunState) -> None:
    """The quality gates first (always: no model, no config), then the configured scorers, prompt
    batch by prompt batch, each scorer's rows of a batch in one commit. A batch's shard work starts
    before the previous batch is committed, so the shards score while this process writes."""
    quality = scorer_kind(QUALITY).default_entry()
    plan = [(quality, scorer_kind(QUALITY).build_here(quality)), *context.engines.scorers()]
    added, statuses = Counter(), {scorer.name: Counter() for _, scorer in plan}
    batches = context.batch_count(state)
    previous = None

    def commit(number: int, prompts: int, candidates: int, started: list) -> None:
        for scorer, pending in started:
            tables = pending.results()
            scores = pa.concat_tables(tables) if tables else schemas.conform("scores", [])
            # the keys were looked up by `unscored` for this batch, and no other batch has them
            added[scorer.name] += context.lake.commit({"scores": scores}, checked=("scores",))["scores"]
            statuses[scorer.name].update(scores.column("status").to_pylist())
        if batches > 1:
            log(f"score: batch {number}/{batches} ({prompts} prompts, {candidates} candidates) done")

    for number, (prompts, candidates) in enumerate(context.prompt_batches(state), start=1):
        started = [(scorer, _start_scores(context, entry, scorer, prompts, candidates, state.run_id))
                   for entry, scorer in plan]
        if previous is not None:
            commit(*previous)
        previous = (number, prompts.height, candidates.height, started)
    if previous is not None:
        commit(*previous)
    for _, scorer in plan:
        state.add("scores_new", added[scorer.name])
        for status, count in statuses[scorer.name].items():
            if status != "ok":  # unparsed verdicts, errors: excluded from pairs, but counted
                state.add(f"scores_{status}", count)
        detail = ", ".join(f"{count} {status}" for status, count in sorted(statuses[scorer.name].items()))
        if detail:
            log(f"score {scorer.name}: {added[scorer.name]} new scores ({detail})")


def _start_scores(context: RunContext, entry, scorer, prompts: pl.DataFrame, candidates: pl.DataFrame,
                  run_id: str) -> Pending:
    """`entry`: the scorer's [[scorers]] entry (its kind's options)."""
    todo = unscored(prompts, candidates, scorer, lambda wanted: context.lake.existing_ids("scores", wanted))
    kind = scorer_kind(entry.kind)
    if kind.needs_model:  # a model scorer runs on this process's engine
        return Done([score_candidates(prompts, todo, [scorer], run_id)])
    calls = [(kind, entry, prompts.filter(pl.col("prompt_id").is_in(part["prompt_id"].unique().implode())),
              part, run_id) for part in split_frame(todo, "prompt_id", context.shards.count)]
    return context.shards.start(score_shard, calls)


def count_gates(state: RunState, scores: pl.DataFrame) -> None:
    """Of a batch of the run's candidates (the counts add up over batches): quality_checked, quality_gated (a gate stopped them) and
    quality_gate_<gate> (candidates each gate flagged), from their newest quality rows."""
    rows = newest_scores(scores.filter((pl.col("scorer") == QUALITY) & (pl.col("status") == "ok")))
    state.add("quality_checked", rows.height)
    gated = rows.filter(pl.col("score") <= 0)
    state.add("quality_gated", gated.height)
    for detail in gated["detail_json"].to_list():
        for gate in {g["gate"] for g in json.loads(detail or "{}").get("gates", [])}:
            state.add(f"quality_gate_{gate}", 1)
