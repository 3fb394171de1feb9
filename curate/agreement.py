"""Verifier agreement, defined once for the views, the dataset card and the report.

A verifier (math_verify, constraints, code_tests) applies to a pair when it has an ok score for
both the chosen and the rejected candidate; per candidate and verifier the newest ok score counts
(newest `created_at`, then the larger `score_id`). The pair AGREES with the verifier when the chosen
scores strictly higher. A tie is not agreement: two wrong answers (0 vs 0) say nothing about which
is better. Over several verifiers a pair agrees when every applicable one agrees.
"""

from __future__ import annotations

import polars as pl

VERIFIERS = ("math_verify", "constraints", "code_tests")
_VERIFIER_LIST = ", ".join(f"'{v}'" for v in VERIFIERS)

# One row per (candidate_id, scorer) with its newest ok verifier score, in SQL (the views).
VERIFIER_SCORES_SQL = f"""
    SELECT candidate_id, scorer, score FROM scores
    WHERE status = 'ok' AND score IS NOT NULL AND scorer IN ({_VERIFIER_LIST})
    QUALIFY row_number() OVER (PARTITION BY candidate_id, scorer ORDER BY created_at DESC, score_id DESC) = 1"""

# Per pair and verifier: agree (strict), tie, disagree, in SQL.
PAIR_VERIFIER_SQL = f"""
    SELECT p.pair_id, p.strategy, c.scorer AS verifier, c.score > r.score AS agree, c.score = r.score AS tie,
           c.score < r.score AS disagree
    FROM pairs p
    JOIN ({VERIFIER_SCORES_SQL}) c ON c.candidate_id = p.chosen_id
    JOIN ({VERIFIER_SCORES_SQL}) r ON r.candidate_id = p.rejected_id AND r.scorer = c.scorer"""


def verifier_scores(scores: pl.DataFrame) -> pl.DataFrame:
    """candidate_id, scorer, score: the newest ok verifier score per candidate (as the SQL above)."""
    return (scores.filter((pl.col("status") == "ok") & pl.col("score").is_not_null()
                          & pl.col("scorer").is_in(VERIFIERS))
            .sort(["created_at", "score_id"], descending=True)
            .unique(["candidate_id", "scorer"], keep="first")
            .select("candidate_id", "scorer", "score"))


def pair_verifier_verdicts(pairs: pl.DataFrame, scores: pl.DataFrame | None) -> pl.DataFrame:
    """pair_id, strategy, verifier, agree, tie, disagree (as PAIR_VERIFIER_SQL)."""
    schema = {"pair_id": pl.String, "strategy": pl.String, "verifier": pl.String, "agree": pl.Boolean,
              "tie": pl.Boolean, "disagree": pl.Boolean}
    if scores is None or scores.is_empty() or pairs.is_empty():
        return pl.DataFrame(schema=schema)
    per_candidate = verifier_scores(scores)
    return (pairs.select("pair_id", "strategy", "chosen_id", "rejected_id")
            .join(per_candidate.rename({"candidate_id": "chosen_id", "score": "c"}), on="chosen_id")
            .join(per_candidate.rename({"candidate_id": "rejected_id", "score": "r"}), on=["rejected_id", "scorer"])
            .select("pair_id", "strategy", pl.col("scorer").alias("verifier"), (pl.col("c") > pl.col("r")).alias("agree"),
                    (pl.col("c") == pl.col("r")).alias("tie"), (pl.col("c") < pl.col("r")).alias("disagree")))
