"""The analyst views return the right figures on a hand-built lake; --as-of reads old snapshots."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from curate import ids
from curate.lake.catalog import Lake

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _prompt(pid, source):
    return {"prompt_id": pid, "source": source, "task": "math", "messages": [{"role": "user", "content": pid}],
            "reference_answer": "1", "run_id": "r1", "created_at": NOW}


def _candidate(cid, pid, text):
    return {"candidate_id": cid, "prompt_id": pid, "model": "m", "sampling_json": "{}", "sample_index": 0,
            "seed": 0, "text": text, "run_id": "r1", "created_at": NOW}


def _score(cid, pid, scorer, score, status="ok"):
    return {"score_id": ids.score_id(cid, scorer, "1"), "candidate_id": cid, "prompt_id": pid, "scorer": scorer,
            "scorer_version": "1", "score": score, "status": status, "run_id": "r1", "created_at": NOW}


def _pair(pid, strategy, chosen_id, rejected_id, chosen, rejected, margin):
    return {"pair_id": f"{pid}-{strategy}", "prompt_id": pid, "strategy": strategy, "params_json": "{}",
            "prompt": [{"role": "user", "content": pid}], "chosen": chosen, "rejected": rejected,
            "chosen_id": chosen_id, "rejected_id": rejected_id, "margin": margin, "reason": "test",
            "dedup_key": f"{pid}-{strategy}", "run_id": "r1", "created_at": NOW}


@pytest.fixture
def lake(tmp_path):
    with Lake(tmp_path / "lake") as lake:
        lake.commit({
            "prompts": [_prompt("p1", "a"), _prompt("p2", "a"), _prompt("p3", "b")],
            "candidates": [_candidate(c, p, t) for c, p, t in [
                ("c1", "p1", "xxxx"), ("c2", "p1", "xx"), ("c3", "p2", "xxxxxx"), ("c4", "p2", "xxx"),
                ("c5", "p3", "x"), ("c6", "p3", "xxxx")]],
            "scores": [_score("c1", "p1", "math_verify", 1.0), _score("c2", "p1", "math_verify", 0.0),
                       _score("c3", "p2", "math_verify", 0.0), _score("c4", "p2", "math_verify", 1.0),
                       _score("c5", "p3", "judge:x", 8.0), _score("c6", "p3", "judge:x", None, "unparsed")],
            "pairs": [_pair("p1", "margin", "c1", "c2", "xxxx", "xx", 1.0),
                      _pair("p2", "margin", "c3", "c4", "xxxxxx", "xxx", 0.5),
                      _pair("p3", "gt", "c5", "c6", "x", "xxxx", None)],
            "rejects": [{"reject_id": f"r{i}", "source": "a", "location": f"line {i}", "raw": "{}",
                         "reason": "invalid JSON", "stage": "ingest", "run_id": "r1", "created_at": NOW}
                        for i in range(3)],
            "dedup_drops": [{"drop_id": "d1", "item_kind": "pair", "item_id": "x", "reason": "minhash",
                             "kept_id": "p1-margin", "similarity": 0.9, "run_id": "r1", "created_at": NOW}],
        })
        yield lake


def test_pair_stats(lake):
    stats = {row["strategy"]: row for row in lake.query("SELECT * FROM pair_stats").iter_rows(named=True)}
    margin = stats["margin"]
    assert margin["pairs"] == 2 and margin["source"] == "a"
    assert margin["margin_p50"] == pytest.approx(0.75)
    assert margin["length_ratio"] == pytest.approx((4 / 2 + 6 / 3) / 2)
    # p1: chosen 1 >= rejected 0 agrees; p2: chosen 0 < rejected 1 disagrees
    assert margin["verified_pairs"] == 2 and margin["verifier_agreement"] == pytest.approx(0.5)
    gt = stats["gt"]  # judge scores are not verifiers, and c6 was unparsed: nothing to agree with
    assert gt["verified_pairs"] == 0 and gt["verifier_agreement"] is None and gt["source"] == "b"


def test_length_bias_scores_rejects_drops(lake):
    bias = {r["strategy"]: r for r in lake.query("SELECT * FROM length_bias").iter_rows(named=True)}
    assert bias["margin"]["chosen_longer"] == 1.0 and bias["gt"]["chosen_longer"] == 0.0
    assert bias["margin"]["chosen_chars"] == 5.0 and bias["margin"]["rejected_chars"] == 2.5
    scores = {(r["scorer"], r["status"]): r for r in lake.query("SELECT * FROM score_distribution").iter_rows(named=True)}
    assert scores[("math_verify", "ok")]["scores"] == 4 and scores[("math_verify", "ok")]["mean"] == 0.5
    assert scores[("judge:x", "unparsed")]["scores"] == 1 and scores[("judge:x", "unparsed")]["mean"] is None
    rejects = lake.query("SELECT * FROM rejects_by_reason")
    assert rejects.rows() == [("a", "ingest", "invalid JSON", 3)]
    drops = lake.query("SELECT * FROM dedup_drops_by_reason")
    assert drops.rows() == [("pair", "minhash", 1, 0.9)]


def test_snapshot_reads_the_lake_as_it_was(tmp_path, lake):
    before = lake.snapshot_id()
    lake.commit({"prompts": [_prompt("p4", "c")]})
    root = lake.root
    lake.close()
    with Lake(root, snapshot=before) as old, Lake(root, read_only=True) as new:
        assert old.count("prompts") == 3 and new.count("prompts") == 4
        assert old.snapshot_of_run(str(before)) == before
