"""The DuckLake lake: tables, idempotent atomic commits, snapshots, read-only access."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from curate.errors import UserError
from curate.lake import schemas
from curate.lake.catalog import Lake

NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def run_row(run_id="run-1", status="running"):
    return {"run_id": run_id, "started_at": NOW, "finished_at": None, "status": status,
            "config_json": "{}", "code_version": "curate test", "counts_json": None}


def prompt_row(pid, content="hi"):
    return {"prompt_id": pid, "source": "s", "task": "chat", "messages": [{"role": "user", "content": content}],
            "run_id": "run-1", "created_at": NOW}


def reject_row(rid, **overrides):
    row = {"reject_id": rid, "source": "s", "location": "line 1", "raw": "{", "reason": "invalid JSON",
           "stage": "ingest", "run_id": "run-1", "created_at": NOW}
    row.update(overrides)
    return row


def pair_row(pid, dedup_key):
    return {"pair_id": pid, "prompt_id": "p1", "strategy": "margin", "params_json": "{}",
            "prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b",
            "chosen_id": "ca", "rejected_id": "cb", "scorer": "math_verify", "chosen_score": 1.0,
            "rejected_score": 0.0, "margin": 1.0, "reason": "r", "dedup_key": dedup_key,
            "run_id": "run-1", "created_at": NOW}


@pytest.fixture
def lake(tmp_path):
    with Lake(tmp_path / "lake") as opened:
        yield opened


def test_new_lake_creates_every_table(tmp_path):
    with Lake(tmp_path / "lake") as lake:
        assert lake.table_names() == set(schemas.TABLES)
        for name in schemas.TABLES:
            assert lake.count(name) == 0
    assert (tmp_path / "lake" / "catalog.sqlite").exists()


def test_stored_columns_and_types_match_declarations(lake):
    for name in schemas.TABLES:
        got = lake.query(f"SELECT * FROM lake.{name} LIMIT 0").columns
        assert got == schemas.table(name).column_names
    types = dict(lake.con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = 'lake' AND table_name = 'prompts'").fetchall())
    assert types["messages"] == 'STRUCT("role" VARCHAR, "content" VARCHAR)[]'
    assert types["created_at"] == "TIMESTAMP WITH TIME ZONE"


def test_reopen_keeps_rows_and_does_not_recreate(tmp_path):
    with Lake(tmp_path / "lake") as lake:
        lake.commit({"prompts": [prompt_row("p1")]})
        snapshot = lake.snapshot_id()
    with Lake(tmp_path / "lake") as lake:
        assert lake.count("prompts") == 1
        assert lake.snapshot_id() == snapshot  # reopening writes nothing


def test_commit_round_trips_nested_rows(lake):
    lake.commit({"prompts": [prompt_row("p1", "hello")]})
    got = lake.read("prompts").to_dicts()
    assert len(got) == 1
    assert got[0]["messages"] == [{"role": "user", "content": "hello"}]
    assert got[0]["created_at"] == NOW


def test_commit_is_idempotent(lake):
    rows = [prompt_row("p1"), prompt_row("p2")]
    assert lake.commit({"prompts": rows}) == {"prompts": 2}
    assert lake.commit({"prompts": rows}) == {"prompts": 0}
    assert lake.count("prompts") == 2


def test_commit_adds_only_new_keys(lake):
    lake.commit({"prompts": [prompt_row("p1", "first")]})
    added = lake.commit({"prompts": [prompt_row("p1", "changed"), prompt_row("p3")]})
    assert added == {"prompts": 1}
    assert lake.count("prompts") == 2
    # an existing key is never overwritten
    first = lake.read("prompts", "prompt_id = 'p1'").to_dicts()[0]
    assert first["messages"][0]["content"] == "first"


def test_duplicate_keys_in_one_batch_stored_once(lake):
    added = lake.commit({"prompts": [prompt_row("p1"), prompt_row("p1"), prompt_row("p2")]})
    assert added == {"prompts": 2}
    assert lake.count("prompts") == 2
    ids_ = lake.query("SELECT prompt_id FROM lake.prompts ORDER BY prompt_id")["prompt_id"].to_list()
    assert ids_ == ["p1", "p2"]


def test_commit_accepts_arrow_tables_and_empty_tables(lake):
    table = schemas.conform("rejects", [reject_row("x1"), reject_row("x2")])
    before = lake.snapshot_id()
    added = lake.commit({"rejects": table, "prompts": schemas.conform("prompts", []), "pairs": []})
    assert added == {"rejects": 2, "prompts": 0, "pairs": 0}
    assert lake.count("rejects") == 2
    assert lake.snapshot_id() == before + 1


def test_one_commit_is_one_snapshot(lake):
    before = lake.snapshot_id()
    lake.commit({"runs": [run_row()], "prompts": [prompt_row("p1")], "rejects": [reject_row("x")]})
    assert lake.snapshot_id() == before + 1
    lake.commit({"prompts": [prompt_row("p2")]})
    assert lake.snapshot_id() == before + 2


def test_failed_commit_is_atomic(lake):
    lake.commit({"runs": [run_row("r0")]})
    before = lake.snapshot_id()
    with pytest.raises(ValueError, match="rejects.source is required"):
        lake.commit({"prompts": [prompt_row("p1")], "runs": [run_row("r1")],
                     "rejects": [reject_row("x", source=None)]})
    assert lake.count("prompts") == 0
    assert lake.count("runs") == 1
    assert lake.count("rejects") == 0
    assert lake.snapshot_id() == before
    # the connection is usable after the rollback
    assert lake.commit({"prompts": [prompt_row("p1")]}) == {"prompts": 1}
    assert lake.snapshot_id() == before + 1


def test_failed_commit_with_arrow_table_missing_columns_is_atomic(lake):
    with pytest.raises(ValueError, match="missing columns"):
        lake.commit({"prompts": [prompt_row("p1")], "rejects": pa.table({"reject_id": ["x"]})})
    assert lake.count("prompts") == 0


def test_existing_ids_by_key_and_by_column(lake):
    lake.commit({"pairs": [pair_row("pa", "k1"), pair_row("pb", "k2")]})
    assert lake.existing_ids("pairs", ["pa", "pz"]) == {"pa"}
    assert lake.existing_ids("pairs", []) == set()
    assert lake.existing_ids("pairs", ["k2", "k9", "pa"], column="dedup_key") == {"k2"}
    # a dedup key is not a pair id
    assert lake.existing_ids("pairs", ["k1"]) == set()


def test_update_run_changes_status_and_fields(lake):
    lake.commit({"runs": [run_row("r1"), run_row("r2")]})
    finished = datetime(2024, 3, 4, 6, 0, tzinfo=timezone.utc)
    lake.update_run("r1", status="completed", finished_at=finished, counts_json='{"prompts": 3}')
    runs = {r["run_id"]: r for r in lake.read("runs").to_dicts()}
    assert runs["r1"]["status"] == "completed"
    assert runs["r1"]["finished_at"] == finished
    assert runs["r1"]["counts_json"] == '{"prompts": 3}'
    assert runs["r2"]["status"] == "running"  # other runs untouched
    assert lake.count("runs") == 2


def test_time_travel_returns_older_row_count(lake):
    lake.commit({"prompts": [prompt_row("p1")]})
    old = lake.snapshot_id()
    lake.commit({"prompts": [prompt_row("p2"), prompt_row("p3")]})
    assert lake.count("prompts") == 3
    then = lake.query("SELECT count(*) AS n FROM lake.prompts AT (VERSION => ?)", [old])
    assert then["n"][0] == 1
    now = lake.query("SELECT count(*) AS n FROM lake.prompts AT (VERSION => ?)", [lake.snapshot_id()])
    assert now["n"][0] == 3


def test_time_travel_sees_status_before_update(lake):
    lake.commit({"runs": [run_row("r1")]})
    old = lake.snapshot_id()
    lake.update_run("r1", status="failed")
    then = lake.query(f"SELECT status FROM lake.runs AT (VERSION => {old})")
    assert then["status"].to_list() == ["running"]
    assert lake.read("runs")["status"].to_list() == ["failed"]


def test_read_only_lake_reads_but_refuses_commit(tmp_path):
    with Lake(tmp_path / "lake") as lake:
        lake.commit({"prompts": [prompt_row("p1")]})
    with Lake(tmp_path / "lake", read_only=True) as ro:
        assert ro.count("prompts") == 1
        assert ro.existing_ids("prompts", ["p1", "p2"]) == {"p1"}
        with pytest.raises(UserError, match="read-only"):
            ro.commit({"prompts": [prompt_row("p2")]})
        assert ro.count("prompts") == 1


def test_read_only_missing_lake_raises_user_error(tmp_path):
    with pytest.raises(UserError, match="no lake at"):
        Lake(tmp_path / "absent", read_only=True)
    assert not (tmp_path / "absent").exists()  # nothing created
