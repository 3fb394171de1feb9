"""The local lake's SQLite catalog: readers while a writer is open, whole snapshots only, one
writer at a time, and lakes with the older DuckDB catalog moved over with every snapshot."""

from __future__ import annotations

import pytest

from curate.errors import UserError
from curate.lake import schemas
from curate.lake.catalog import Lake
from tests.test_lake import pair_row, prompt_row, reject_row, run_row

TABLES = ("runs", "prompts", "rejects", "pairs")


def _everything(lake: Lake) -> dict:
    return {t: sorted(map(str, lake.read(t).to_dicts())) for t in TABLES}


def test_readers_open_while_the_writer_is_open_and_keep_their_snapshot(tmp_path):
    with Lake(tmp_path / "lake") as writer:
        writer.commit({"runs": [run_row()], "prompts": [prompt_row("p1")]})
        with Lake(tmp_path / "lake", read_only=True) as early:
            seen = early.snapshot_id()
            assert early.count("prompts") == 1
            writer.commit({"prompts": [prompt_row("p2"), prompt_row("p3")], "rejects": [reject_row("x")]})
            # the reader stays on the snapshot it opened at: never half of a later commit
            assert (early.count("prompts"), early.count("rejects"), early.snapshot_id()) == (1, 0, seen)
        with Lake(tmp_path / "lake", read_only=True) as late:
            assert (late.count("prompts"), late.count("rejects"), late.snapshot_id()) == (3, 1, seen + 1)


def test_a_second_writer_is_refused_and_the_lock_goes_with_the_first(tmp_path):
    with Lake(tmp_path / "lake") as writer:
        writer.commit({"prompts": [prompt_row("p1")]})
        with pytest.raises(UserError, match="in use by another curate process"):
            Lake(tmp_path / "lake")
    with Lake(tmp_path / "lake") as again:
        assert again.count("prompts") == 1


def test_a_new_lake_appears_whole(tmp_path):
    with Lake(tmp_path / "lake"):
        files = sorted(p.name for p in (tmp_path / "lake").iterdir())
        assert "catalog.sqlite" in files and not [f for f in files if "partial" in f]
        with Lake(tmp_path / "lake", read_only=True) as reader:
            assert reader.table_names() == set(schemas.TABLES)
            assert reader.query("SELECT version FROM curate_views_version").height == 1  # views made too


def test_a_duckdb_catalog_moves_to_sqlite_with_every_row_and_snapshot(tmp_path):
    root = tmp_path / "lake"
    legacy = root / "catalog.ducklake"
    with Lake(root, catalog=str(legacy)) as old:  # how lakes were made before: same data path
        old.commit({"runs": [run_row("r1")], "prompts": [prompt_row(f"p{i}", f"text {i} [x]") for i in range(3)]})
        old.commit({"pairs": [pair_row("pa", "k1")], "rejects": [reject_row("x", raw="{'a': [1]}")]})
        middle = old.snapshot_id()
        old.update_run("r1", status="completed", counts_json='{"prompts": 3}')
        # more rows than DuckLake inlines into its catalog: these go to Parquet files
        old.commit({"prompts": [prompt_row(f"q{i}") for i in range(200)]})
        before = _everything(old)
        snapshots = old.query("SELECT snapshot_id, snapshot_time, changes::VARCHAR AS c FROM lake.snapshots()")
    with Lake(root, snapshot=middle, catalog=str(legacy)) as old_middle:
        at_middle = _everything(old_middle)
    with Lake(root, read_only=True) as reader:  # not migrated yet: read from the DuckDB file
        assert not reader.is_sqlite and _everything(reader) == before

    with Lake(root) as lake:  # the first writer moves the catalog
        assert lake.is_sqlite
        assert _everything(lake) == before
        assert lake.query("SELECT snapshot_id, snapshot_time, changes::VARCHAR AS c FROM lake.snapshots()").equals(snapshots)
        lake.commit({"prompts": [prompt_row("new")]})
    assert not legacy.exists() and (root / "catalog.ducklake.migrated").exists()
    with Lake(root, snapshot=middle) as then:  # time travel through the moved catalog
        assert _everything(then) == at_middle
        assert then.read("runs")["status"].to_list() == ["running"]
    with Lake(root, read_only=True) as reader:
        assert reader.count("prompts") == 204
