"""Margin selection (METHODS.md §1): best vs worst candidate of a prompt by one scorer.

A prompt yields a pair only when best - worst >= min_margin and best > worst: ties never
form a pair, so chosen == rejected cannot happen. Among equal best (or worst) scores the
smallest candidate id wins, so the choice is deterministic.
"""

from __future__ import annotations

import polars as pl

from curate.pairs import register
from curate.pairs.rows import finish_pairs, usable_scores
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
    scored = usable_scores(scores, candidates, scorer, params.get("scorer_version"))
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
        .with_columns(
            pl.lit(scorer).alias("scorer"),
            pl.format("best vs worst by {}: {} vs {}", pl.lit(scorer), pl.col("chosen_score").round(3),
                      pl.col("rejected_score").round(3)).alias("reason"),
        )
    )
    return finish_pairs(picked, "margin", params, run_id)
