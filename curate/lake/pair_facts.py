"""What the analyst views read per pair, stored when the pair is committed (curate.lake.views).

`pair_facts`: per pair its run, strategy, prompt source, margin, chosen and rejected length in
characters and its verifier verdict (curate.lake.agreement) over the scores in the lake at that commit,
so "as of the build": a verifier score added later does not change it. Everything else there is
fixed with the pair. `pair_stats_parts`: per commit and (strategy, source, run) the pair_stats
figures of the pairs that commit added; counts and sums add up across parts, and a run with a
group split over several parts (a resumed run) gets its percentiles recomputed from pair_facts,
until the pairs step of a run merges every split run's parts into one per group (`merge_sql`).

`Lake.commit` writes both for every pair it adds, in the same snapshot, whoever commits the pairs.
A lake made before these tables gets them, filled for every stored pair, on its first writer open
(`backfill_sql`, in the transaction that creates them: interrupted, it is redone next time).
"""

from __future__ import annotations

from curate.lake.agreement import pair_verifier_sql

TABLES = ("pair_facts", "pair_stats_parts")


def facts_sql(pairs: str, prompts: str = "prompts", scores: str = "scores", few: bool = True) -> str:
    """pair_facts rows for the pairs of relation `pairs` (pairs' columns), from `prompts` and `scores`;
    `few`: the pairs are a small part of the lake (one commit's), so only their candidates' scores are read."""
    return f"""
    SELECT p.pair_id, p.run_id, p.strategy, pr.source, p.margin, length(p.chosen) AS chosen_chars,
           length(p.rejected) AS rejected_chars, coalesce(v.verifiers, 0) AS verifiers,
           v.verifier_agrees, v.verifier_tie, p.created_at
    FROM {pairs} p
    LEFT JOIN (SELECT prompt_id, source FROM {prompts}
               WHERE prompt_id IN (SELECT prompt_id FROM {pairs})) pr ON pr.prompt_id = p.prompt_id
    LEFT JOIN (SELECT pair_id, bool_and(agree) AS verifier_agrees, bool_or(tie) AS verifier_tie,
                      count(*) AS verifiers
               FROM ({pair_verifier_sql(pairs, scores, only_their_scores=few)}) GROUP BY pair_id) v ON v.pair_id = p.pair_id"""


def parts_sql(facts: str) -> str:
    """pair_stats_parts rows for the pair_facts rows of relation `facts` (one commit's)."""
    return f"""
    SELECT gen_random_uuid()::VARCHAR AS part_id, strategy, source, run_id, count(*) AS pairs,
           quantile_cont(margin, 0.1) AS margin_p10, median(margin) AS margin_p50,
           quantile_cont(margin, 0.9) AS margin_p90,
           sum(chosen_chars::DOUBLE / nullif(rejected_chars, 0)) AS length_ratio_sum,
           count(nullif(rejected_chars, 0)) AS length_ratio_count,
           count(verifier_agrees) AS verified_pairs, count(*) FILTER (WHERE verifier_agrees) AS agreeing_pairs,
           now() AS created_at
    FROM {facts} GROUP BY strategy, source, run_id"""


SPLIT_RUNS = "SELECT run_id FROM {parts} GROUP BY strategy, source, run_id HAVING count(*) > 1"


def merge_sql(lake: str, runs: list[str]) -> list[str]:
    """Statements that replace the parts of `runs` with one part per group, from their pair_facts
    (a run whose pairs came in several commits: batches, a resumed run)."""
    listed = ", ".join("'" + run.replace("'", "''") + "'" for run in runs)
    return [f"DELETE FROM {lake}.pair_stats_parts WHERE run_id IN ({listed})",
            f"INSERT INTO {lake}.pair_stats_parts BY NAME "
            f"{parts_sql(f'(SELECT * FROM {lake}.pair_facts WHERE run_id IN ({listed}))')}"]


def backfill_sql(lake: str) -> list[str]:
    """Statements that fill both tables for every pair of a lake made before them."""
    return [f"INSERT INTO {lake}.pair_facts BY NAME {facts_sql(f'{lake}.pairs', f'{lake}.prompts', f'{lake}.scores', few=False)}",
            f"INSERT INTO {lake}.pair_stats_parts BY NAME {parts_sql(f'{lake}.pair_facts')}"]


def keep_facts_of_new_pairs(lake, pairs) -> None:
    """The commit hook of `pairs` (curate.lake.catalog.FACTS): pair_facts and pair_stats_parts rows
    of the new pairs, from the prompts and scores stored now (in the same snapshot)."""
    with lake.registered("_new_pairs", pairs):
        facts = lake.con.execute(facts_sql("_new_pairs", f"{lake.alias}.prompts", f"{lake.alias}.scores")
                                 ).to_arrow_table()
    with lake.registered("_new_facts", facts):
        lake.con.execute(f"INSERT INTO {lake.alias}.pair_facts BY NAME SELECT * FROM _new_facts")
        lake.con.execute(f"INSERT INTO {lake.alias}.pair_stats_parts BY NAME {parts_sql('_new_facts')}")
