"""Analyst views in the lake (README lists them with example queries)."""

from __future__ import annotations

import hashlib

from curate.agreement import pair_verifier_sql


def views() -> dict[str, str]:
    """Each view's SQL; the verifiers they read are the registry's at the time of the call."""
    return {
        # verifier_agrees: every applicable verifier scores the chosen strictly higher (curate.agreement).
        "pair_verdicts": f"""
        SELECT pair_id, bool_and(agree) AS verifier_agrees, bool_or(tie) AS verifier_tie, count(*) AS verifiers
        FROM ({pair_verifier_sql()}) GROUP BY pair_id""",
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
        # The pair audit (curate.audit): each pair's verdict over its latest row per check, and per strategy.
        "pair_audit_verdicts": """
        SELECT pair_id, CASE WHEN bool_or(verdict = 'refuted') THEN 'refuted'
                             WHEN bool_or(verdict = 'confirmed' AND check_name IN
                                          ('verifier', 'reversal', 'arithmetic', 'judge')) THEN 'confirmed'
                             ELSE 'uncheckable' END AS verdict,
               count(*) AS checks
        FROM (SELECT * FROM pair_audits QUALIFY row_number() OVER (
                  PARTITION BY pair_id, check_name ORDER BY created_at DESC, audit_id DESC) = 1)
        GROUP BY pair_id""",
        "pair_audit_summary": """
        SELECT p.strategy, count(*) AS pairs, count(*) FILTER (WHERE v.verdict = 'confirmed') AS confirmed,
               count(*) FILTER (WHERE v.verdict = 'refuted') AS refuted,
               count(*) FILTER (WHERE v.verdict = 'uncheckable') AS uncheckable,
               count(*) FILTER (WHERE v.verdict IS NULL) AS unaudited
        FROM pairs p LEFT JOIN pair_audit_verdicts v USING (pair_id) GROUP BY p.strategy""",
        "pair_audit_checks": """
        SELECT p.strategy, a.check_name, a.verdict, count(*) AS pairs
        FROM (SELECT * FROM pair_audits QUALIFY row_number() OVER (
                  PARTITION BY pair_id, check_name ORDER BY created_at DESC, audit_id DESC) = 1) a
        JOIN pairs p USING (pair_id) GROUP BY ALL""",
        "rejects_by_reason": """
        SELECT source, stage, reason, count(*) AS rejects FROM rejects GROUP BY ALL""",
        "dedup_drops_by_reason": """
        SELECT item_kind, reason, count(*) AS drops, avg(similarity) AS mean_similarity
        FROM dedup_drops GROUP BY ALL""",
    }


def views_version() -> str:
    text = "\n".join(f"{name}:{' '.join(sql.split())}" for name, sql in views().items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]
