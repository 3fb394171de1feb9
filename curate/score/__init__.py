"""Score: one row per (candidate, scorer, scorer version), computed only where missing.

A scorer has a `name`, a `version`, the `tasks` it applies to (None: every task), and
`score(items) -> list[ScoreResult]` over `ScoreItem`s. A scorer that cannot score a candidate
says why in `status`; it never returns a made-up number.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

import polars as pl
import pyarrow as pa

from curate import bulk_ids, ids
from curate.lake import schemas

_DETAIL_JSON = json.JSONEncoder(default=str).encode  # one encoder, not one per row
SCORE_ID_PARTS = ("candidate_id", "scorer", "scorer_version")  # what bulk_ids.score_ids hashes


@dataclass(frozen=True)
class ScoreItem:
    candidate_id: str
    prompt_id: str
    task: str
    messages: list[dict]
    text: str
    prompt: dict  # the prompt's row with the candidate's columns (reference_answer, constraints_json, finish_reason, ...)


@dataclass
class ScoreResult:
    score: float | None
    status: str = "ok"  # ok | error | no_text
    detail: dict = field(default_factory=dict)


class Scorer(Protocol):
    name: str
    version: str
    tasks: frozenset[str] | None

    def score(self, items: list[ScoreItem]) -> list[ScoreResult]: ...


def newest_scores(scores: pl.DataFrame, per: tuple[str, ...] = ("candidate_id",)) -> pl.DataFrame:
    """The newest of `scores` per `per` (latest created_at, then largest score_id): the row every
    reader of scores takes when a candidate was scored more than once."""
    return scores.sort(["created_at", "score_id"], descending=True).unique(list(per), keep="first",
                                                                          maintain_order=True)


def with_z_scores(scores: pl.DataFrame) -> pl.DataFrame:
    """`score_z`: each ok score standardised within its (scorer, version) over the given rows,
    so strategies can combine scorers on different scales. Null where the scorer's scores do
    not vary (a z-score of a constant means nothing)."""
    group = ["scorer", "scorer_version"]
    ok = pl.col("status") == "ok"
    mean = pl.col("score").filter(ok).mean().over(group)
    std = pl.col("score").filter(ok).std().over(group)
    z = pl.when(ok & (std > 0)).then((pl.col("score") - mean) / std).otherwise(None)
    return scores.with_columns(z.alias("score_z"))


def _score_row(item_ids: tuple[str, str], scorer: Scorer, result: ScoreResult, run_id: str,
               now: datetime) -> dict:
    candidate_id, prompt_id = item_ids
    return {
        "score_id": None,  # filled in bulk (score_candidates)
        "candidate_id": candidate_id, "prompt_id": prompt_id,
        "scorer": scorer.name, "scorer_version": scorer.version,
        "score": result.score if result.status == "ok" else None,
        "status": result.status,
        "detail_json": _DETAIL_JSON(result.detail) if result.detail else None,
        "run_id": run_id, "created_at": now,
    }


def _joined_rows(candidates: pl.DataFrame, prompts: pl.DataFrame) -> list[dict]:
    """Per candidate (with a prompt in `prompts`) its prompt's columns and its own in one dict, the
    candidate's winning where both have one (run_id); timestamps left out. A prompt's row, messages
    included, is converted once and shared by its candidates."""
    if candidates.is_empty():
        return []
    prompt_rows = {row["prompt_id"]: row for row in prompts.drop("created_at", strict=False).to_dicts()}
    columns = [name for name in candidates.columns if name != "created_at"]
    rows = []
    for values in zip(*(candidates[name].to_list() for name in columns)):
        row = dict(zip(columns, values))
        prompt_row = prompt_rows.get(row["prompt_id"])
        if prompt_row is not None:
            rows.append({**prompt_row, **row})
    return rows


def unscored(prompts: pl.DataFrame, candidates: pl.DataFrame, scorer: Scorer,
             existing: Callable[[list[str]], set[str]]) -> pl.DataFrame:
    """The candidates `scorer` applies to (by their prompt's task) that have no stored score from
    its version; `existing(score_ids)` says which are stored."""
    if scorer.tasks is not None:
        answered = prompts.filter(pl.col("task").is_in(list(scorer.tasks)))["prompt_id"]
        candidates = candidates.filter(pl.col("prompt_id").is_in(answered.implode()))
    if candidates.is_empty():
        return candidates
    wanted = candidates.select("candidate_id", bulk_ids.score_ids(
        candidates["candidate_id"], pl.repeat(scorer.name, candidates.height, eager=True),
        pl.repeat(scorer.version, candidates.height, eager=True)))
    done = existing(wanted["score_id"].to_list())
    if not done:
        return candidates
    stored = wanted.filter(pl.col("score_id").is_in(list(done)))["candidate_id"]
    return candidates.filter(~pl.col("candidate_id").is_in(stored.implode()))


def score_candidates(
    prompts: pl.DataFrame,
    candidates: pl.DataFrame,
    scorers: list[Scorer],
    run_id: str,
    existing: Callable[[list[str]], set[str]] = lambda ids_: set(),
) -> pa.Table:
    """Scores for every (candidate, scorer) that applies and is not stored yet."""
    now = datetime.now(timezone.utc)
    rows: list[dict] = []
    for scorer in scorers:
        todo = unscored(prompts, candidates, scorer, existing)
        items, failed = [], []
        for row in _joined_rows(todo, prompts):
            if row["text"] is None:
                failed.append(row)
                continue
            items.append(ScoreItem(row["candidate_id"], row["prompt_id"], row["task"],
                                   row["messages"], row["text"], row))
        for row in failed:
            result = ScoreResult(None, "no_text", {"reason": row.get("error") or "candidate has no text"})
            rows.append(_score_row((row["candidate_id"], row["prompt_id"]), scorer, result, run_id, now))
        if items:
            results = scorer.score(items)
            for item, result in zip(items, results, strict=True):
                rows.append(_score_row((item.candidate_id, item.prompt_id), scorer, result, run_id, now))
    bulk_ids.fill_ids(rows, "score_id", bulk_ids.score_ids, SCORE_ID_PARTS)
    return schemas.conform("scores", rows)
