"""What the audit views read per pair, rewritten whenever audit rows for the pair are committed.

`pair_audit_facts` holds one row per audited pair: its verdict over its latest `pair_audits` row
per check (curate.audit.checks's rule: a refuting check refutes, an independent check confirms, else
uncheckable), its answer verdict over the `answer_*` checks (refuted if one refutes, confirmed if
`answer_verifier` or `answer_judge` confirms, else unchecked), each check's latest verdict and the
pair's strategy. `Lake.commit` keeps it current
in the snapshot that adds audit rows: the pairs' old rows are deleted and recomputed from all their
audit rows. Pairs audited for the first time (every pair of a nightly run) need no read of older
audit rows, so a night's audit costs the same whatever the lake holds. The views then count these
rows instead of grouping every audit row (curate.lake.views).

A lake made before this table gets it, filled from every audit row, on its first writer open; one
made before the answer verdict gets the column (null, read as unchecked) the same way.
"""

from __future__ import annotations

TABLE = "pair_audit_facts"
# Only these can confirm a pair: hygiene and score_order re-read the strategy's own evidence. The
# audit's shared checks (verifier, judge) and the built-in strategies' own (reversal, arithmetic: their
# declarations mark them `confirms`; tests/test_extension_points.py checks that the two agree).
INDEPENDENT_CHECKS = ("verifier", "reversal", "arithmetic", "judge")
# Checks of the answer (curate.audit.answer_checks): is the chosen a sound answer to the prompt as the pair
# states it? Their names start with ANSWER_PREFIX; only ANSWER_CONFIRMING ones can confirm an answer,
# the others (format, own text, grounding, context) are necessary conditions that can only refute.
ANSWER_PREFIX = "answer_"
ANSWER_CONFIRMING = ("answer_verifier", "answer_judge")
ANSWER_VERDICTS = ("confirmed", "refuted", "unchecked")
# Any other check a strategy declares `confirms` (a plugin's) says so in each of its rows, in
# detail_json: the rows, not a registry of this process, decide what confirms a pair, so the facts
# come out the same in any process that rebuilds them, the plugin imported or not.
EVIDENCE_KEY = "counts_as_evidence"


def facts_sql(audits: str, pair_facts: str = "pair_facts") -> str:
    """pair_audit_facts rows of every pair in relation `audits` (pair_audits' columns): it must hold
    all of those pairs' audit rows. Strategies come from `pair_facts`, read for those pairs only."""
    independent = ", ".join(f"'{check}'" for check in INDEPENDENT_CHECKS)
    confirming = ", ".join(f"'{check}'" for check in ANSWER_CONFIRMING)
    answer = f"starts_with(l.check_name, '{ANSWER_PREFIX}')"
    evidence = (f"CASE WHEN verdict = 'confirmed' THEN coalesce(json_extract_string(detail_json, '$.{EVIDENCE_KEY}') "
                "= 'true', false) ELSE false END")
    return f"""
    SELECT l.pair_id, any_value(f.strategy) AS strategy,
           CASE WHEN bool_or(l.verdict = 'refuted') THEN 'refuted'
                WHEN bool_or(l.verdict = 'confirmed' AND (l.check_name IN ({independent})
                                                          OR (l.evidence AND NOT {answer}))) THEN 'confirmed'
                ELSE 'uncheckable' END AS verdict,
           CASE WHEN bool_or(l.verdict = 'refuted' AND {answer}) THEN 'refuted'
                WHEN bool_or(l.verdict = 'confirmed' AND (l.check_name IN ({confirming})
                                                          OR (l.evidence AND {answer}))) THEN 'confirmed'
                ELSE 'unchecked' END AS answer_verdict,
           count(*) AS checks,
           list({{'check_name': l.check_name, 'verdict': l.verdict}} ORDER BY l.check_name) AS check_verdicts,
           max(l.at) AS audited_at
    FROM (SELECT pair_id, check_name, arg_max(verdict, (created_at, audit_id)) AS verdict,
                 arg_max({evidence}, (created_at, audit_id)) AS evidence, max(created_at) AS at
          FROM {audits} GROUP BY pair_id, check_name) l
    LEFT JOIN (SELECT pair_id, strategy FROM {pair_facts}
               WHERE pair_id IN (SELECT pair_id FROM {audits})) f ON f.pair_id = l.pair_id
    GROUP BY l.pair_id"""


def refresh_sql(lake: str, new_audits: str) -> tuple[str, str, str]:
    """(delete, insert-if-none-deleted, insert-if-some-deleted): the statements that bring the facts
    of the pairs in `new_audits` (audit rows just inserted into `lake`.pair_audits) up to date. When
    the delete removed no row, those pairs had no audit before and `new_audits` holds all their rows."""
    delete = f"DELETE FROM {lake}.{TABLE} WHERE pair_id IN (SELECT pair_id FROM {new_audits})"
    insert = f"INSERT INTO {lake}.{TABLE} BY NAME "
    every_row = f"(SELECT * FROM {lake}.pair_audits WHERE pair_id IN (SELECT pair_id FROM {new_audits}))"
    return (delete, insert + facts_sql(new_audits, f"{lake}.pair_facts"),
            insert + facts_sql(every_row, f"{lake}.pair_facts"))


def backfill_sql(lake: str) -> str:
    """The statement that fills the table from every audit row of a lake made before it."""
    return f"INSERT INTO {lake}.{TABLE} BY NAME {facts_sql(f'{lake}.pair_audits', f'{lake}.pair_facts')}"


def keep_facts_of_new_audits(lake, audits) -> None:
    """The commit hook of `pair_audits` (curate.lake.catalog.FACTS): the pair_audit_facts of the
    pairs these new audit rows are about, rewritten in the same snapshot."""
    delete, insert_first, insert_again = refresh_sql(lake.alias, "_new_audits")
    with lake.registered("_new_audits", audits):
        deleted = lake.con.execute(delete).fetchone()[0]
        lake.con.execute(insert_again if deleted else insert_first)
