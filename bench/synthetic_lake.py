"""A synthetic lake of realistic shape, written straight into DuckLake with SQL (no LLM, no Python rows).

`n_pairs` pairs over n_pairs / 2 prompts (2 pairs each), 4 candidates per prompt, and per candidate a
`quality` and a `math_verify` score (4 * n_pairs score rows), three audit rows per pair (hygiene,
score_order, verifier, as the audit writes for a math pair), the pairs' and the audits' facts as
Lake.commit writes them (curate.lake.pair_facts, curate.lake.audit_facts). Ids are
32 hex digits like the real ones; texts are a few sentences. 10,000 pairs take a second or two.

    .venv/bin/python bench/synthetic_lake.py DIR --pairs 10000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curate.lake import audit_facts  # noqa: E402
from curate.lake.pair_facts import facts_sql, parts_sql  # noqa: E402

WORDS = "the of and to in is that it was for on are as with his they at be this from have or by one had".split()
TS = "TIMESTAMPTZ '2026-11-01 00:00:00+00'"


def _text(seed_sql: str, words: int = 40) -> str:
    """SQL for a text of `words` words drawn deterministically from `seed_sql`."""
    vocab = "[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
    return (f"array_to_string(list_transform(range({words}), "
            f"k -> {vocab}[1 + (hash({seed_sql}, k) % {len(WORDS)})::INTEGER]), ' ')")


def fill(lake, n_pairs: int, run_id: str = "synthetic", offset: int = 0) -> None:
    """Append n_pairs pairs (and their prompts, candidates, scores, audits) in one snapshot."""
    n_prompts = max(1, n_pairs // 2)
    con = lake.con
    new_pairs = f"(SELECT * FROM lake.pairs WHERE run_id = '{run_id}')"
    facts = f"(SELECT * FROM lake.pair_facts WHERE run_id = '{run_id}')"
    with lake.transaction():
        con.execute(f"""INSERT INTO lake.runs (run_id, started_at, finished_at, status, config_json)
            SELECT '{run_id}', {TS}, {TS}, 'completed', '{{}}'
            WHERE NOT EXISTS (SELECT 1 FROM lake.runs WHERE run_id = '{run_id}')""")
        con.execute(f"""INSERT INTO lake.prompts (prompt_id, source, task, messages, reference_answer, run_id, created_at)
            SELECT md5('p' || i), 'source' || (i % 5), 'math',
                   [{{'role': 'user', 'content': 'Question ' || i || ': ' || {_text("i", 20)}}}],
                   (i % 10)::VARCHAR, '{run_id}', {TS}
            FROM range({offset}, {offset + n_prompts}) t(i)""")
        con.execute(f"""INSERT INTO lake.candidates (candidate_id, prompt_id, model, sampling_json, sample_index,
                                seed, text, finish_reason, run_id, created_at)
            SELECT md5('c' || i || '-' || s), md5('p' || i), 'synthetic', '{{}}', s, s,
                   'Answer ' || s || ' to ' || i || ': ' || {_text("i * 8 + s")}, 'stop', '{run_id}', {TS}
            FROM range({offset}, {offset + n_prompts}) t(i), range(4) u(s)""")
        con.execute(f"""INSERT INTO lake.scores (score_id, candidate_id, prompt_id, scorer, scorer_version, score,
                                status, run_id, created_at)
            SELECT md5('s' || i || '-' || s || scorer), md5('c' || i || '-' || s), md5('p' || i), scorer, '1',
                   CASE WHEN scorer = 'quality' THEN 1.0 ELSE (s < 2)::INTEGER::DOUBLE END, 'ok', '{run_id}', {TS}
            FROM range({offset}, {offset + n_prompts}) t(i), range(4) u(s),
                 (VALUES ('quality'), ('math_verify')) v(scorer)""")
        # pairs: chosen sample 0 or 1 (score 1) over rejected sample 2 or 3 (score 0)
        con.execute(f"""INSERT INTO lake.pairs (pair_id, prompt_id, strategy, params_json, prompt, chosen, rejected,
                                chosen_id, rejected_id, scorer, chosen_score, rejected_score, margin, reason,
                                dedup_key, run_id, created_at)
            SELECT md5('pair' || i || '-' || k), md5('p' || i), 'margin', '{{}}',
                   [{{'role': 'user', 'content': 'Question ' || i || ': ' || {_text("i", 20)}}}],
                   'Answer ' || k || ' to ' || i || ': ' || {_text("i * 8 + k")},
                   'Answer ' || (k + 2) || ' to ' || i || ': ' || {_text("i * 8 + k + 2")},
                   md5('c' || i || '-' || k), md5('c' || i || '-' || (k + 2)), 'math_verify', 1.0, 0.0, 1.0,
                   'synthetic', md5('key' || i || '-' || k), '{run_id}', {TS}
            FROM range({offset}, {offset + n_prompts}) t(i), range(2) u(k)""")
        # what the views read, as Lake.commit writes it with pairs (curate.lake.pair_facts)
        con.execute(f"INSERT INTO lake.pair_facts BY NAME {facts_sql(new_pairs, 'lake.prompts', 'lake.scores')}")
        con.execute(f"INSERT INTO lake.pair_stats_parts BY NAME {parts_sql(facts)}")
        con.execute(f"""INSERT INTO lake.pair_audits (audit_id, pair_id, check_name, verdict, audit_version,
                                run_id, created_at)
            SELECT md5('audit' || i || '-' || k || check_name), md5('pair' || i || '-' || k), check_name,
                   CASE WHEN check_name = 'hygiene' AND i % 10 = 0 THEN 'uncheckable' ELSE 'confirmed' END, '1',
                   '{run_id}', {TS}
            FROM range({offset}, {offset + n_prompts}) t(i), range(2) u(k),
                 (VALUES ('hygiene'), ('score_order'), ('verifier')) c(check_name)""")
        audits = f"(SELECT * FROM lake.pair_audits WHERE run_id = '{run_id}')"
        con.execute(f"INSERT INTO lake.pair_audit_facts BY NAME {audit_facts.facts_sql(audits, 'lake.pair_facts')}")


def main() -> None:
    from curate.lake.catalog import Lake

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir")
    parser.add_argument("--pairs", type=int, default=10_000)
    args = parser.parse_args()
    began = time.perf_counter()
    with Lake(Path(args.dir)) as lake:
        fill(lake, args.pairs)
        print({t: lake.count(t) for t in ("prompts", "candidates", "scores", "pairs")},
              f"in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
