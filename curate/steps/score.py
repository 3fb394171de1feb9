"""Score: the quality gates, then every configured scorer, on the run's candidates not yet scored."""

from __future__ import annotations

import json
import time
from collections import Counter

import polars as pl
import pyarrow as pa

from curate import schemas
from curate.progress import log
from curate.score import score_candidates, unscored
from curate.score.quality import NAME as QUALITY
from curate.score.registry import build_portable, scorer_kind
from curate.shards import score_shard, split_frame
from curate.steps.state import RunContext, RunState


def score(context: RunContext, state: RunState, timing: str = "score") -> None:
    """The quality gates first (always: no model, no config), then the configured scorers."""
    began = time.monotonic()
    prompts, candidates = context.run_prompts_and_candidates(state)
    for kind, scorer in [(QUALITY, build_portable(QUALITY)), *context.engines.scorers()]:
        scores = _scores_of(context, kind, scorer, prompts, candidates, state.run_id)
        added = context.lake.commit({"scores": scores})["scores"]
        state.add("scores_new", added)
        statuses = Counter(scores.column("status").to_pylist())
        for status, count in statuses.items():
            if status != "ok":  # unparsed verdicts, errors: excluded from pairs, but counted
                state.add(f"scores_{status}", count)
        detail = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
        if scores.num_rows:
            log(f"score {scorer.name}: {added} new scores" + (f" ({detail})" if detail else ""))
    state.took(timing, time.monotonic() - began)


def _scores_of(context: RunContext, kind: str, scorer, prompts: pl.DataFrame, candidates: pl.DataFrame,
               run_id: str) -> pa.Table:
    todo = unscored(prompts, candidates, scorer, lambda wanted: context.lake.existing_ids("scores", wanted))
    if scorer_kind(kind).needs_model:  # a model scorer runs on this process's engine
        return score_candidates(prompts, todo, [scorer], run_id)
    calls = [(kind, prompts.filter(pl.col("prompt_id").is_in(part["prompt_id"].unique().implode())),
              part, run_id) for part in split_frame(todo, "prompt_id", context.shards.count)]
    tables = context.shards.map(score_shard, calls)
    return pa.concat_tables(tables) if tables else schemas.conform("scores", [])


def count_gates(state: RunState, scores: pl.DataFrame) -> None:
    """Of the run's candidates: quality_checked, quality_gated (a gate stopped them) and
    quality_gate_<gate> (candidates each gate flagged), from their newest quality rows."""
    rows = (scores.filter((pl.col("scorer") == QUALITY) & (pl.col("status") == "ok"))
            .sort(["created_at", "score_id"], descending=True).unique("candidate_id", keep="first"))
    state.counts["quality_checked"] = rows.height
    gated = rows.filter(pl.col("score") <= 0)
    state.counts["quality_gated"] = gated.height
    for detail in gated["detail_json"].to_list():
        for gate in {g["gate"] for g in json.loads(detail or "{}").get("gates", [])}:
            state.add(f"quality_gate_{gate}", 1)
