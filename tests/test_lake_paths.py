"""A local lake opens from any working directory, under any spelling of its path, after its data
dir moves, and from read-only media; a lake whose catalog records a relative data path (as every
lake written with a relative data dir did) is repaired by its next writer."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest

from curate.lake.catalog import Lake

NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
ROWS = 50


def _pairs(n: int) -> list[dict]:
    return [{"pair_id": f"pair{i}", "prompt_id": "p1", "strategy": "margin", "params_json": "{}",
             "prompt": [{"role": "user", "content": "q"}], "chosen": f"chosen {i}", "rejected": f"rejected {i}",
             "chosen_id": f"c{i}", "rejected_id": f"r{i}", "scorer": "math_verify", "chosen_score": 1.0,
             "rejected_score": 0.0, "margin": 1.0, "reason": "r", "dedup_key": f"k{i}", "run_id": "run-1",
             "created_at": NOW} for i in range(n)]


def _stored(catalog: Path) -> str:
    with closing(sqlite3.connect(catalog)) as con:
        return con.execute("SELECT value FROM ducklake_metadata WHERE key = 'data_path'").fetchone()[0]


def _record(catalog: Path, data_path: str) -> None:
    """What a lake written by `curate run --data-dir data` recorded before: its path as given."""
    with closing(sqlite3.connect(catalog)) as con, con:
        con.execute("UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path'", [data_path])


def _read_everything(root) -> list[str]:
    with Lake(root, read_only=True) as lake:
        files = [f for t in lake.table_names() for (f,) in lake.con.execute(
            f"SELECT data_file FROM ducklake_list_files('lake', '{t}')").fetchall()]
        assert files and all(os.path.exists(f) for f in files)
        return sorted(lake.query("SELECT chosen FROM pairs")["chosen"].to_list())


@pytest.fixture
def relative_lake(tmp_path, monkeypatch) -> Path:
    """A lake made from tmp_path/project as `data/lake`, its data path recorded as `data/lake/files/`."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    with Lake(Path("data/lake")) as lake:
        lake.commit({"pairs": _pairs(ROWS)})
    _record(project / "data/lake/catalog.sqlite", "data/lake/files/")
    monkeypatch.chdir(tmp_path)
    return project / "data/lake"


def test_a_lake_opens_from_another_working_directory_and_spelling(relative_lake, tmp_path, monkeypatch):
    expected = sorted(f"chosen {i}" for i in range(ROWS))
    assert _read_everything(relative_lake) == expected
    monkeypatch.chdir(relative_lake.parent)
    assert _read_everything(Path("lake")) == expected
    assert _read_everything(Path("../data/./lake")) == expected
    assert _stored(relative_lake / "catalog.sqlite") == "data/lake/files/"  # a reader changes nothing


def test_the_next_writer_repairs_the_record_and_a_moved_lake_reads(relative_lake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Lake(relative_lake) as lake:  # the writer, from another directory and spelled in full
        assert lake.data_path == f"{relative_lake.resolve()}/files/"
        lake.commit({"pairs": _pairs(ROWS + 5)[ROWS:]})
    assert _stored(relative_lake / "catalog.sqlite") == f"{relative_lake.resolve()}/files/"
    moved = tmp_path / "elsewhere" / "lake"
    shutil.move(relative_lake, moved)
    assert len(_read_everything(moved)) == ROWS + 5
    with Lake(moved) as lake:
        lake.commit({"pairs": _pairs(ROWS + 6)[ROWS + 5:]})
    assert _stored(moved / "catalog.sqlite") == f"{moved.resolve()}/files/"
    assert len(_read_everything(moved)) == ROWS + 6


@contextmanager
def _read_only_mount(source: Path, target: Path):
    """`source` mounted read-only at `target` (a bind mount: needs root), else None."""
    target.mkdir(parents=True)
    mount = ["mount", "--bind", str(source), str(target)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        yield None
        return
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], capture_output=True).returncode != 0:
            yield None
        else:
            yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)


def test_a_lake_on_read_only_media_reads(relative_lake, tmp_path):
    with _read_only_mount(relative_lake, tmp_path / "mounted" / "lake") as mounted:
        if mounted is None:
            pytest.skip("no read-only bind mount here (needs root)")
        assert not os.access(mounted, os.W_OK)
        assert len(_read_everything(mounted)) == ROWS
