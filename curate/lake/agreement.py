"""Verifier agreement, defined once for the views, the dataset card and the report.

A verifier (a correctness verifier of curate.score.registry: math_verify, constraints, code_tests)
applies to a pair when it has an ok score for
both the chosen and the rejected candidate; per candidate and verifier the newest ok score counts
(newest `created_at`, then the larger `score_id`). The pair AGREES with the verifier when the chosen
scores strictly higher. A tie is not agreement: two wrong answers (0 vs 0) say nothing about which
is better. Over several verifiers a pair agrees when every applicable one agrees.
"""

from __future__ import annotations

import polars as pl

from curate.score import newest_scores
from curate.score.registry import verifier_names


def verifier_scores_sql(scores: str = "scores", of_pairs: str | None = None) -> str:
    """One row per (candidate_id, scorer) with its newest ok verifier score, in SQL: a hash
    aggregate (arg_max over (created_at, score_id)), five times faster than a window over the scores.
    With `of_pairs` (a relation of pairs), only the candidates of those pairs."""
    names = ", ".join(f"'{name}'" for name in verifier_names())
    only = (f" AND candidate_id IN (SELECT chosen_id FROM {of_pairs} UNION ALL SELECT rejected_id FROM {of_pairs})"
            if of_pairs else "")
    return f"""
    SELECT candidate_id, scorer, arg_max(score, (created_at, score_id)) AS score FROM {scores}
    WHERE status = 'ok' AND score IS NOT NULL AND scorer IN ({names}){only}
    GROUP BY candidate_id, scorer"""


def pair_verifier_sql(pairs: str = "pairs", scores: str = "scores", only_their_scores: bool = False) -> str:
    """Per pair and verifier: agree (strict), tie, disagree, in SQL.

    The pair is unpivoted to one row per side, joined to the scores on candidate_id alone and grouped
    back per (pair, verifier): the only join is on a candidate id, so no plan can pair the scores of
    unrelated candidates (a join of scores to scores on the scorer, which DuckLake's planner chose with
    no statistics, grows with the square of the score rows)."""
    return f"""
    SELECT pair_id, strategy, verifier, c > r AS agree, c = r AS tie, c < r AS disagree
    FROM (SELECT s.pair_id, s.strategy, v.scorer AS verifier,
                 max(v.score) FILTER (WHERE s.is_chosen) AS c, max(v.score) FILTER (WHERE NOT s.is_chosen) AS r
          FROM (SELECT pair_id, strategy, chosen_id AS candidate_id, true AS is_chosen FROM {pairs}
                UNION ALL SELECT pair_id, strategy, rejected_id, false FROM {pairs}) s
          JOIN ({verifier_scores_sql(scores, pairs if only_their_scores else None)}) v ON v.candidate_id = s.candidate_id
          GROUP BY s.pair_id, s.strategy, v.scorer)
    WHERE c IS NOT NULL AND r IS NOT NULL"""


def verifier_scores(scores: pl.DataFrame) -> pl.DataFrame:
    """candidate_id, scorer, score: the newest ok verifier score per candidate (as the SQL above)."""
    ok = scores.filter((pl.col("status") == "ok") & pl.col("score").is_not_null()
                       & pl.col("scorer").is_in(verifier_names()))
    return newest_scores(ok, ("candidate_id", "scorer")).select("candidate_id", "scorer", "score")


def pair_verifier_verdicts(pairs: pl.DataFrame, scores: pl.DataFrame | None) -> pl.DataFrame:
    """pair_id, strategy, verifier, agree, tie, disagree (as pair_verifier_sql)."""
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
