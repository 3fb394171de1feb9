"""Analyst views in the lake (README lists them with example queries)."""

from __future__ import annotations

import hashlib

from curate.lake.pair_facts import SPLIT_RUNS

# Runs whose pair_stats group has several parts (commits) not merged yet: their figures are recomputed.
_SPLIT_RUNS = SPLIT_RUNS.format(parts="pair_stats_parts")


def views() -> dict[str, str]:
    """Each view's SQL. Pair figures come from pair_facts and pair_stats_parts (curate.lake.pair_facts),
    written with the pairs, audit figures from pair_audit_facts (curate.lake.audit_facts), written with
    the audit rows; scores, rejects and drops are read live."""
    return {
        # Per pair as of its build (curate.lake.pair_facts): verifier_agrees is curate.lake.agreement's
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
        # The pair audit (curate.audit.checks): each pair's verdict over its latest row per check, as
        # pair_audit_facts holds it (curate.lake.audit_facts), and per strategy.
        "pair_audit_verdicts": """
        SELECT pair_id, verdict, coalesce(answer_verdict, 'unchecked') AS answer_verdict, checks
        FROM pair_audit_facts""",
        # answer_*: the answer-level verdicts (is the chosen a sound answer to the prompt as stated?)
        "pair_audit_summary": """
        SELECT s.strategy, s.pairs, coalesce(a.confirmed, 0) AS confirmed, coalesce(a.refuted, 0) AS refuted,
               coalesce(a.uncheckable, 0) AS uncheckable, s.pairs - coalesce(a.audited, 0) AS unaudited,
               coalesce(a.answer_confirmed, 0) AS answer_confirmed, coalesce(a.answer_refuted, 0) AS answer_refuted,
               coalesce(a.answer_unchecked, 0) AS answer_unchecked
        FROM (SELECT strategy, count(*) AS pairs FROM pair_facts GROUP BY strategy) s
        LEFT JOIN (SELECT strategy, count(*) AS audited, count(*) FILTER (WHERE verdict = 'confirmed') AS confirmed,
                          count(*) FILTER (WHERE verdict = 'refuted') AS refuted,
                          count(*) FILTER (WHERE verdict = 'uncheckable') AS uncheckable,
                          count(*) FILTER (WHERE answer_verdict = 'confirmed') AS answer_confirmed,
                          count(*) FILTER (WHERE answer_verdict = 'refuted') AS answer_refuted,
                          count(*) FILTER (WHERE coalesce(answer_verdict, 'unchecked') = 'unchecked')
                              AS answer_unchecked
                   FROM pair_audit_facts WHERE strategy IS NOT NULL GROUP BY strategy) a USING (strategy)""",
        "pair_audit_checks": """
        SELECT strategy, c.check_name, c.verdict, count(*) AS pairs
        FROM (SELECT strategy, unnest(check_verdicts) AS c FROM pair_audit_facts WHERE strategy IS NOT NULL)
        GROUP BY ALL""",
        "rejects_by_reason": """
        SELECT source, stage, reason, count(*) AS rejects FROM rejects GROUP BY ALL""",
        "dedup_drops_by_reason": """
        SELECT item_kind, reason, count(*) AS drops, avg(similarity) AS mean_similarity
        FROM dedup_drops GROUP BY ALL""",
    }


def views_version() -> str:
    text = "\n".join(f"{name}:{' '.join(sql.split())}" for name, sql in views().items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]
