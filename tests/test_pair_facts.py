"""The views read pair_facts and pair_stats_parts (curate.lake.pair_facts), written with the pairs: on the
same rows they give what the former definitions computed from pairs, prompts, scores and audits."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from curate import ids
from curate.lake.agreement import pair_verifier_sql
from curate.lake.catalog import Lake

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)
VERIFIERS = ("math_verify", "constraints", "code_tests")

# The views as they were before pair_facts: every figure computed from the pairs' own rows.
FORMER_VERDICTS = f"""
    SELECT pair_id, bool_and(agree) AS verifier_agrees, bool_or(tie) AS verifier_tie, count(*) AS verifiers
    FROM ({pair_verifier_sql()}) GROUP BY pair_id"""
FORMER = {
    "pair_verdicts": FORMER_VERDICTS,
    "pair_stats": f"""
    SELECT p.strategy, pr.source, p.run_id, count(*) AS pairs,
           quantile_cont(p.margin, 0.1) AS margin_p10, median(p.margin) AS margin_p50,
           quantile_cont(p.margin, 0.9) AS margin_p90,
           avg(length(p.chosen)::DOUBLE / nullif(length(p.rejected), 0)) AS length_ratio,
           count(v.pair_id) AS verified_pairs,
           avg(CASE WHEN v.verifier_agrees THEN 1.0 WHEN NOT v.verifier_agrees THEN 0.0 END) AS verifier_agreement
    FROM pairs p JOIN prompts pr USING (prompt_id) LEFT JOIN ({FORMER_VERDICTS}) v USING (pair_id)
    GROUP BY ALL""",
    "length_bias": """
    SELECT strategy, count(*) AS pairs, avg(length(chosen)) AS chosen_chars, avg(length(rejected)) AS rejected_chars,
           avg(CASE WHEN length(chosen) > length(rejected) THEN 1.0 ELSE 0.0 END) AS chosen_longer
    FROM pairs GROUP BY strategy""",
    "pair_audit_verdicts": """
    SELECT pair_id, CASE WHEN bool_or(verdict = 'refuted') THEN 'refuted'
                         WHEN bool_or(verdict = 'confirmed' AND check_name IN
                                      ('verifier', 'reversal', 'arithmetic', 'judge')) THEN 'confirmed'
                         ELSE 'uncheckable' END AS verdict,
           CASE WHEN bool_or(verdict = 'refuted' AND starts_with(check_name, 'answer_')) THEN 'refuted'
                WHEN bool_or(verdict = 'confirmed' AND check_name IN ('answer_verifier', 'answer_judge'))
                THEN 'confirmed' ELSE 'unchecked' END AS answer_verdict, count(*) AS checks
    FROM (SELECT * FROM pair_audits QUALIFY row_number() OVER (
              PARTITION BY pair_id, check_name ORDER BY created_at DESC, audit_id DESC) = 1)
    GROUP BY pair_id""",
    "pair_audit_checks": """
    SELECT p.strategy, a.check_name, a.verdict, count(*) AS pairs
    FROM (SELECT * FROM pair_audits QUALIFY row_number() OVER (
              PARTITION BY pair_id, check_name ORDER BY created_at DESC, audit_id DESC) = 1) a
    JOIN pairs p USING (pair_id) GROUP BY ALL""",
}
FORMER["pair_audit_summary"] = f"""
    SELECT p.strategy, count(*) AS pairs, count(*) FILTER (WHERE v.verdict = 'confirmed') AS confirmed,
           count(*) FILTER (WHERE v.verdict = 'refuted') AS refuted,
           count(*) FILTER (WHERE v.verdict = 'uncheckable') AS uncheckable,
           count(*) FILTER (WHERE v.verdict IS NULL) AS unaudited,
           count(*) FILTER (WHERE v.answer_verdict = 'confirmed') AS answer_confirmed,
           count(*) FILTER (WHERE v.answer_verdict = 'refuted') AS answer_refuted,
           count(*) FILTER (WHERE v.answer_verdict = 'unchecked') AS answer_unchecked
    FROM pairs p LEFT JOIN ({FORMER["pair_audit_verdicts"]}) v USING (pair_id) GROUP BY p.strategy"""


def _rows(lake, sql):
    """The rows, sorted, floats to 10 significant digits (sums taken in another order differ in the last bits)."""
    rows = lake.query(f"SELECT * FROM ({sql})").rows()
    rows = [tuple(float(f"{v:.10g}") if isinstance(v, float) else v for v in row) for row in rows]
    return sorted(rows, key=lambda row: tuple((v is None, str(v)) for v in row))


def assert_views_equal_former(lake):
    for name, former in FORMER.items():
        got, want = _rows(lake, f"SELECT * FROM {name}"), _rows(lake, former)
        assert len(want) > 0 and got == want, name


def _night(rng: random.Random, run: str, prompts: int, offset: int) -> dict[str, list[dict]]:
    """One run's rows: prompts of two sources, 4 candidates each, verifier scores (some missing, some
    failed, some ties, rescored rows), margin and gt pairs (gt chosen is the reference), audits."""
    rows = {"prompts": [], "candidates": [], "scores": [], "pairs": [], "pair_audits": []}
    for p in range(offset, offset + prompts):
        pid = f"p{p}"
        rows["prompts"].append({"prompt_id": pid, "source": f"src{p % 2}", "task": "math", "reference_answer": "1",
                                "messages": [{"role": "user", "content": f"question {p}"}], "run_id": run,
                                "created_at": NOW})
        texts = {}
        for s in range(4):
            cid = f"{pid}-c{s}"
            texts[cid] = "é" * rng.randint(0, 3) + "x" * rng.randint(0, 40)
            rows["candidates"].append({"candidate_id": cid, "prompt_id": pid, "model": "m", "sampling_json": "{}",
                                       "sample_index": s, "seed": s, "text": texts[cid], "run_id": run,
                                       "created_at": NOW})
            for verifier in rng.sample(VERIFIERS, rng.randint(0, 2)) + ["quality"]:
                for version, age in (("1", 0), ("2", rng.choice([1, -1]))):  # a rescored row, newer or older
                    if version == "2" and rng.random() < 0.5:
                        continue
                    status = rng.choice(["ok", "ok", "ok", "error"])
                    rows["scores"].append({
                        "score_id": ids.score_id(cid, verifier, version), "candidate_id": cid, "prompt_id": pid,
                        "scorer": verifier, "scorer_version": version, "status": status, "run_id": run,
                        "score": None if status != "ok" else float(rng.randint(0, 2)),
                        "created_at": NOW + timedelta(hours=age)})
        cands = list(texts)
        for k, (chosen, rejected) in enumerate([(cands[0], cands[1]), (cands[2], cands[3]), ("reference", cands[1])]):
            strategy = "gt" if chosen == "reference" else "margin"
            pair_id = f"{run}-{pid}-{k}"
            rows["pairs"].append({
                "pair_id": pair_id, "prompt_id": pid, "strategy": strategy, "params_json": "{}",
                "prompt": [{"role": "user", "content": f"question {p}"}], "chosen": texts.get(chosen, "the reference"),
                "rejected": texts[rejected], "chosen_id": chosen, "rejected_id": rejected, "reason": "test",
                "margin": None if rng.random() < 0.1 else rng.uniform(0, 3), "dedup_key": pair_id, "run_id": run,
                "created_at": NOW})
            for a in range(rng.randint(0, 3)):
                check = rng.choice(["verifier", "hygiene", "judge", "answer_verifier", "answer_format"])
                rows["pair_audits"].append({
                    "audit_id": f"{pair_id}-a{a}", "pair_id": pair_id, "check_name": check,
                    "verdict": rng.choice(["confirmed", "refuted", "uncheckable"]), "audit_version": "1",
                    "run_id": run, "created_at": NOW + timedelta(minutes=rng.randint(0, 2))})
    return rows


@pytest.fixture
def lake(tmp_path):
    rng = random.Random(15)
    with Lake(tmp_path / "lake") as lake:
        lake.commit(_night(rng, "r1", 40, 0))
        second = _night(rng, "r2", 40, 40)
        # the pairs come in a later commit than their scores; audits follow their pairs, as the audit does
        later = {name: second.pop(name) for name in ("pairs", "pair_audits")}
        lake.commit(second)
        lake.commit(later)
        yield lake


def test_views_over_facts_equal_the_former_definitions(lake):
    assert lake.count("pair_facts") == lake.count("pairs") == 240
    assert lake.query("SELECT count(*) AS n FROM pair_verdicts")["n"][0] > 0
    assert_views_equal_former(lake)


def test_a_run_committed_in_several_parts_is_recomputed(lake):
    rng = random.Random(3)
    night = _night(rng, "r3", 30, 80)
    pairs, audits = night.pop("pairs"), night.pop("pair_audits")
    lake.commit(night)
    lake.commit({"pairs": pairs[:40]})
    lake.commit({"pairs": pairs[40:]})
    lake.commit({"pair_audits": audits[:30]})
    lake.commit({"pair_audits": audits[30:]})
    assert lake.query("SELECT count(*) AS n FROM pair_stats_parts WHERE run_id = 'r3'")["n"][0] == 8
    assert_views_equal_former(lake)
    parts_of_others = _rows(lake, "SELECT * EXCLUDE (part_id) FROM pair_stats_parts WHERE run_id <> 'r3'")
    assert lake.merge_pair_stats_parts() == ["r3"]  # what the pairs step does at its end
    assert lake.query("SELECT count(*) AS n FROM pair_stats_parts WHERE run_id = 'r3'")["n"][0] == 4
    assert _rows(lake, "SELECT * EXCLUDE (part_id) FROM pair_stats_parts WHERE run_id <> 'r3'") == parts_of_others
    assert_views_equal_former(lake)
    assert lake.merge_pair_stats_parts() == []


def test_pairs_committed_again_add_no_facts(lake):
    parts = lake.count("pair_stats_parts")
    again = lake.read("pairs", "run_id = 'r1'")
    assert lake.commit({"pairs": again.to_arrow()}) == {"pairs": 0}
    assert lake.count("pair_stats_parts") == parts and lake.count("pair_facts") == 240
    assert_views_equal_former(lake)


def test_audit_rows_for_audited_pairs_rewrite_their_facts(lake):
    """A later audit row for a pair replaces the pair's facts row, over all its rows (the older
    checks' latest rows included); the same rows committed again change nothing."""
    pair_id = lake.query("SELECT pair_id FROM pair_audit_facts WHERE checks >= 2 ORDER BY pair_id LIMIT 1")["pair_id"][0]
    check = lake.query(f"SELECT check_name FROM pair_audits WHERE pair_id = '{pair_id}' LIMIT 1")["check_name"][0]
    newer = {"audit_id": f"{pair_id}-later", "pair_id": pair_id, "check_name": check, "verdict": "refuted",
             "audit_version": "2", "run_id": "r9", "created_at": NOW + timedelta(days=1)}
    facts = lake.count("pair_audit_facts")
    assert lake.commit({"pair_audits": [newer]}) == {"pair_audits": 1}
    assert lake.count("pair_audit_facts") == facts
    row = lake.query(f"SELECT * FROM pair_audit_facts WHERE pair_id = '{pair_id}'").row(0, named=True)
    assert row["verdict"] == "refuted" and row["checks"] >= 2
    assert {"check_name": check, "verdict": "refuted"} in row["check_verdicts"]
    assert_views_equal_former(lake)
    assert lake.commit({"pair_audits": [newer]}) == {"pair_audits": 0}
    assert lake.count("pair_audit_facts") == facts
    assert lake.query(f"SELECT * FROM pair_audit_facts WHERE pair_id = '{pair_id}'").row(0, named=True) == row
    incremental = _rows(lake, "SELECT * FROM pair_audit_facts")
    lake.rebuild_audit_facts()  # what a whole-lake audit does at its end: the same rows from scratch
    assert _rows(lake, "SELECT * FROM pair_audit_facts") == incremental


def test_verdicts_are_as_of_the_build(lake):
    """A verifier score written after a pair's commit does not change its stored verdict."""
    pair = lake.query("SELECT * FROM pairs WHERE chosen_id <> 'reference' LIMIT 1").row(0, named=True)
    before = lake.query(f"SELECT * FROM pair_verdicts WHERE pair_id = '{pair['pair_id']}'").rows()
    later = NOW + timedelta(days=1)
    lake.commit({"scores": [
        {"score_id": ids.score_id(cid, "math_verify", "9"), "candidate_id": cid, "prompt_id": pair["prompt_id"],
         "scorer": "math_verify", "scorer_version": "9", "score": score, "status": "ok", "run_id": "r9",
         "created_at": later} for cid, score in ((pair["chosen_id"], 0.0), (pair["rejected_id"], 1.0))]})
    assert lake.query(f"SELECT * FROM pair_verdicts WHERE pair_id = '{pair['pair_id']}'").rows() == before
    live = lake.query(f"SELECT * FROM ({FORMER_VERDICTS}) WHERE pair_id = '{pair['pair_id']}'").row(0, named=True)
    assert live["verifier_agrees"] is False


def test_a_lake_from_before_the_facts_gets_them_on_open(lake):
    root = lake.root
    former = {name: _rows(lake, sql) for name, sql in FORMER.items()}
    with lake.transaction():  # the lake as an older curate left it
        for table in ("pair_facts", "pair_stats_parts", "pair_audit_facts"):
            lake.con.execute(f"DROP TABLE lake.{table}")
    lake.close()
    with Lake(root) as reopened:
        assert reopened.count("pair_facts") == 240
        assert reopened.count("pair_audit_facts") == reopened.query(
            "SELECT count(DISTINCT pair_id) AS n FROM pair_audits")["n"][0] > 0
        assert {name: _rows(reopened, sql) for name, sql in FORMER.items()} == former
        assert_views_equal_former(reopened)


def test_audit_facts_from_before_the_answer_verdict_get_the_column_on_open(lake):
    """A lake whose pair_audit_facts has no answer_verdict (curate before the answer checks): the
    next writer adds it, null, which the views read as unchecked; its next audit rows fill it."""
    root = lake.root
    claim_level = _rows(lake, "SELECT pair_id, verdict, checks FROM pair_audit_verdicts")
    with lake.transaction():
        lake.con.execute("ALTER TABLE lake.pair_audit_facts DROP COLUMN answer_verdict")
    lake.close()
    with Lake(root) as reopened:
        assert reopened.query("SELECT count(*) AS n FROM pair_audit_facts WHERE answer_verdict IS NULL")["n"][0] \
            == reopened.count("pair_audit_facts") > 0
        assert _rows(reopened, "SELECT pair_id, verdict, checks FROM pair_audit_verdicts") == claim_level
        summary = reopened.query("SELECT sum(answer_unchecked) AS u, sum(pairs - unaudited) AS audited "
                                 "FROM pair_audit_summary")
        assert summary["u"][0] == summary["audited"][0]
        pair_id = reopened.query("SELECT pair_id FROM pair_audit_facts ORDER BY pair_id LIMIT 1")["pair_id"][0]
        reopened.commit({"pair_audits": [{
            "audit_id": f"{pair_id}-answer", "pair_id": pair_id, "check_name": "answer_format", "verdict": "refuted",
            "audit_version": "1", "run_id": "r9", "created_at": NOW + timedelta(hours=1)}]})
        row = reopened.query(f"SELECT verdict, answer_verdict FROM pair_audit_verdicts WHERE pair_id = '{pair_id}'")
        assert row.row(0) == ("refuted", "refuted")
