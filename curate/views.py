"""Analyst views in the lake (README lists them with example queries)."""

from __future__ import annotations

# Scorers that check a ground truth: a pair "agrees" with them when the chosen scores at least
# as well as the rejected on every one present for both.
VERIFIERS = ("math_verify", "constraints", "code_tests")
_VERIFIER_LIST = ", ".join(f"'{v}'" for v in VERIFIERS)

VIEWS: dict[str, str] = {
    "pair_verdicts": f"""
        SELECT p.pair_id, bool_and(c.score >= r.score) AS verifier_agrees, count(*) AS verifiers
        FROM pairs p
        JOIN scores c ON c.candidate_id = p.chosen_id AND c.status = 'ok' AND c.scorer IN ({_VERIFIER_LIST})
        JOIN scores r ON r.candidate_id = p.rejected_id AND r.status = 'ok' AND r.scorer = c.scorer
                     AND r.scorer_version = c.scorer_version
        GROUP BY p.pair_id""",
    "pair_stats": """
        SELECT p.strategy, pr.source, p.run_id, count(*) AS pairs,
               quantile_cont(p.margin, 0.1) AS margin_p10, median(p.margin) AS margin_p50,
               quantile_cont(p.margin, 0.9) AS margin_p90,
               avg(length(p.chosen)::DOUBLE / nullif(length(p.rejected), 0)) AS length_ratio,
               count(v.pair_id) AS verified_pairs,
               avg(CASE WHEN v.verifier_agrees THEN 1.0 WHEN NOT v.verifier_agrees THEN 0.0 END)
                   AS verifier_agreement
        FROM pairs p JOIN prompts pr USING (prompt_id) LEFT JOIN pair_verdicts v USING (pair_id)
        GROUP BY ALL""",
    "length_bias": """
        SELECT strategy, count(*) AS pairs, avg(length(chosen)) AS chosen_chars,
               avg(length(rejected)) AS rejected_chars,
               avg(CASE WHEN length(chosen) > length(rejected) THEN 1.0 ELSE 0.0 END) AS chosen_longer
        FROM pairs GROUP BY strategy""",
    "score_distribution": """
        SELECT scorer, scorer_version, status, count(*) AS scores, avg(score) AS mean,
               stddev_samp(score) AS std, min(score) AS min, median(score) AS median, max(score) AS max
        FROM scores GROUP BY ALL""",
    "rejects_by_reason": """
        SELECT source, stage, reason, count(*) AS rejects FROM rejects GROUP BY ALL""",
    "dedup_drops_by_reason": """
        SELECT item_kind, reason, count(*) AS drops, avg(similarity) AS mean_similarity
        FROM dedup_drops GROUP BY ALL""",
}


def views_version() -> str:
    import hashlib

    text = "\n".join(f"{name}:{' '.join(sql.split())}" for name, sql in VIEWS.items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]
