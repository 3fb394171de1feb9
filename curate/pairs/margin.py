"""Margin selection (METHODS.md §1): best vs worst candidate of a prompt by one scorer.

A prompt yields a pair only when best - worst >= min_margin and best > worst: ties never
form a pair, so chosen == rejected cannot happen. Among equal best (or worst) scores the
smallest candidate id wins, so the choice is deterministic.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl

from curate import ids
from curate.dedup import pair_dedup_key
from curate.pairs import register
from curate.score import with_z_scores

DEFAULTS = {"scorer": "math_verify", "min_margin": 0.0, "normalise": "none"}


@register("margin")
def build(prompts: pl.DataFrame, candidates: pl.DataFrame, scores: pl.DataFrame, config: dict,
          run_id: str = "") -> pl.DataFrame:
    params = {**DEFAULTS, **config}
    scorer, min_margin = params["scorer"], float(params["min_margin"])
    if params["normalise"] not in ("none", "z"):
        raise ValueError(f"margin: normalise must be 'none' or 'z', not {params['normalise']!r}")
    if params["normalise"] == "z":  # margins in standard deviations of this scorer
        scores = with_z_scores(scores).with_columns(pl.col("score_z").alias("score"))
    usable = scores.filter(pl.col("scorer") == scorer)
    if "scorer_version" in params:
        usable = usable.filter(pl.col("scorer_version") == params["scorer_version"])
    # One score per candidate: with several versions stored and none named, the newest counts.
    usable = usable.sort(["created_at", "score_id"], descending=True).unique("candidate_id", keep="first")
    scored = (
        usable.filter((pl.col("status") == "ok") & pl.col("score").is_not_null())
        .select("candidate_id", "score")
        .join(candidates.filter(pl.col("text").is_not_null()).select("candidate_id", "prompt_id", "text"),
              on="candidate_id")
    )
    best = (scored.sort(["score", "candidate_id"], descending=[True, False])
            .group_by("prompt_id", maintain_order=True).first())
    worst = (scored.sort(["score", "candidate_id"], descending=[False, False])
             .group_by("prompt_id", maintain_order=True).first())
    picked = (
        best.join(worst, on="prompt_id", suffix="_rejected")
        .rename({"candidate_id": "chosen_id", "text": "chosen", "score": "chosen_score",
                 "candidate_id_rejected": "rejected_id", "text_rejected": "rejected",
                 "score_rejected": "rejected_score"})
        .with_columns((pl.col("chosen_score") - pl.col("rejected_score")).alias("margin"))
        .filter((pl.col("margin") > 0) & (pl.col("margin") >= min_margin))
        .join(prompts.select("prompt_id", pl.col("messages").alias("prompt")), on="prompt_id")
        .sort("prompt_id")
    )
    now = datetime.now(timezone.utc)
    params_json = json.dumps(params, sort_keys=True)
    rows = []
    for row in picked.iter_rows(named=True):
        rows.append({
            "pair_id": ids.pair_id("margin", row["chosen_id"], row["rejected_id"], row["prompt_id"]),
            "prompt_id": row["prompt_id"], "strategy": "margin", "params_json": params_json,
            "prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"],
            "chosen_id": row["chosen_id"], "rejected_id": row["rejected_id"], "scorer": scorer,
            "chosen_score": row["chosen_score"], "rejected_score": row["rejected_score"],
            "margin": row["margin"],
            "reason": f"best vs worst by {scorer}: {row['chosen_score']:.3g} vs {row['rejected_score']:.3g}",
            "dedup_key": pair_dedup_key(row["prompt"], row["chosen"], row["rejected"]),
            "run_id": run_id, "created_at": now,
        })
    from curate import schemas

    return pl.from_arrow(schemas.conform("pairs", rows))
