"""Analyst views in the lake (README lists them with example queries)."""

from __future__ import annotations

import hashlib

# Runs whose pair_stats group has several parts (commits): their figures are recomputed.
_SPLIT_RUNS = "SELECT run_id FROM pair_stats_parts GROUP BY strategy, source, run_id HAVING count(*) > 1"
# Per (pair, check) its latest audit row's verdict: a hash aggregate, not a window over every row.
_LATEST_AUDITS = """SELECT pair_id, check_name, arg_max(verdict, (created_at, audit_id)) AS verdict
        FROM pair_audits GROUP BY pair_id, check_name"""


def views() -> dict[str, str]:
    """Each view's SQL. Pair figures come from pair_facts and pair_stats_parts (curate.pair_facts),
    written with the pairs; scores, audits, rejects and drops are read live."""
    return {
        # Per pair as of its build (curate.pair_facts): verifier_agrees is curate.agreement's
        # definition over the scores the lake held when the pair was committed.
        "pair_verdicts": """
        SELECT pair_id, verifier_agrees, verifier_tie, verifiers FROM pair_facts WHERE verifiers > 0""",
        # The parts each commit wrote, added up; a run with a group split over several commits (a
        # resumed run) is recomputed from its pair_facts, since percentiles do not add up.
        "pair_stats": f"""
        SELECT strategy, source, run_id, pairs, margin_p10, margin_p50, margin_p90,
               length_ratio_sum / nullif(length_ratio_count, 0) AS length_ratio, verified_pairs,
               agreeing_pairs::DOUBLE / nullif(verified_pairs, 0) AS verifier_agreement
        FROM pair_stats_parts WHERE run_id NOT IN ({_SPLIT_RUNS})
        UNION ALL
        SELECT strategy, source, run_id, count(*) AS pairs, quantile_cont(margin, 0.1) AS margin_p10,
               median(margin) AS margin_p50, quantile_cont(margin, 0.9) AS margin_p90,
               avg(chosen_chars::DOUBLE / nullif(rejected_chars, 0)) AS length_ratio,
               count(verifier_agrees) AS verified_pairs,
               avg(CASE WHEN verifier_agrees THEN 1.0 WHEN NOT verifier_agrees THEN 0.0 END) AS verifier_agreement
        FROM pair_facts WHERE run_id IN ({_SPLIT_RUNS}) GROUP BY ALL""",
        "length_bias": """
        SELECT strategy, count(*) AS pairs, avg(chosen_chars) AS chosen_chars,
               avg(rejected_chars) AS rejected_chars,
               avg(CASE WHEN chosen_chars > rejected_chars THEN 1.0 ELSE 0.0 END) AS chosen_longer
        FROM pair_facts GROUP BY strategy""",
        "score_distribution": """
        SELECT scorer, scorer_version, status, count(*) AS scores, avg(score) AS mean,
               stddev_samp(score) AS std, min(score) AS min, median(score) AS median, max(score) AS max
        FROM scores GROUP BY ALL""",
        # The pair audit (curate.audit): each pair's verdict over its latest row per check, and per strategy.
        "pair_audit_verdicts": f"""
        SELECT pair_id, CASE WHEN bool_or(verdict = 'refuted') THEN 'refuted'
                             WHEN bool_or(verdict = 'confirmed' AND check_name IN
                                          ('verifier', 'reversal', 'arithmetic', 'judge')) THEN 'confirmed'
                             ELSE 'uncheckable' END AS verdict,
               count(*) AS checks
        FROM ({_LATEST_AUDITS}) GROUP BY pair_id""",
        "pair_audit_summary": """
        SELECT p.strategy, count(*) AS pairs, count(*) FILTER (WHERE v.verdict = 'confirmed') AS confirmed,
               count(*) FILTER (WHERE v.verdict = 'refuted') AS refuted,
               count(*) FILTER (WHERE v.verdict = 'uncheckable') AS uncheckable,
               count(*) FILTER (WHERE v.verdict IS NULL) AS unaudited
        FROM pair_facts p LEFT JOIN pair_audit_verdicts v USING (pair_id) GROUP BY p.strategy""",
        "pair_audit_checks": f"""
        SELECT p.strategy, a.check_name, a.verdict, count(*) AS pairs
        FROM ({_LATEST_AUDITS}) a JOIN pair_facts p USING (pair_id) GROUP BY ALL""",
        "rejects_by_reason": """
        SELECT source, stage, reason, count(*) AS rejects FROM rejects GROUP BY ALL""",
        "dedup_drops_by_reason": """
        SELECT item_kind, reason, count(*) AS drops, avg(similarity) AS mean_similarity
        FROM dedup_drops GROUP BY ALL""",
    }


def views_version() -> str:
    text = "\n".join(f"{name}:{' '.join(sql.split())}" for name, sql in views().items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]
