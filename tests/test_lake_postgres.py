"""The lake with its catalog in a real PostgreSQL server (started here) and its data path elsewhere."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from curate.config import LakeConfig
from curate.errors import UserError
from curate.lake.catalog import Lake, open_lake, redact
from tests.test_lake import prompt_row, run_row


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth), one database per lake."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        # initdb refuses to run as root: the cluster then belongs to the `postgres` user, in a
        # folder of its own outside pytest's (root-only) tmp dirs.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.dir = Path(tempfile.mkdtemp(prefix="curate-pg-"))
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self.port = _free_port()
        self.names = (f"lake_{i}" for i in itertools.count())

    def _run(self, tool: str, *args: str) -> str:
        result = subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True,
                                timeout=120, cwd=self.dir)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def start(self) -> None:
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "curate", "-A", "trust", "--no-sync")
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "start",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def conninfo(self, dbname: str, port: int | None = None) -> str:
        return f"dbname={dbname} host=127.0.0.1 port={port or self.port} user=curate"

    def new_database(self) -> str:
        name = next(self.names)
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "curate", name)
        return name

    def sql(self, dbname: str, query: str) -> str:
        return self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "curate", "-d", dbname,
                         "-Atc", query).strip()


@pytest.fixture(scope="module")
def postgres():
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin; .ci/run installs them)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root needs runuser to start PostgreSQL as the postgres user")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def catalog(postgres):
    """A fresh database; returns the lake catalog string for it."""
    return f"postgres:{postgres.conninfo(postgres.new_database())}"


def _prompts(prefix: str, count: int) -> list[dict]:
    return [prompt_row(f"{prefix}{i}", f"question {prefix}{i}") for i in range(count)]


def test_commit_and_read_back_through_postgres(tmp_path, postgres, catalog):
    files = tmp_path / "files"
    with Lake(tmp_path / "lake", catalog=catalog, data_path=str(files)) as lake:
        added = lake.commit({"runs": [run_row()], "prompts": _prompts("p", 300)})
        assert added == {"runs": 1, "prompts": 300}
        assert lake.location == catalog
    assert not (tmp_path / "lake" / "catalog.sqlite").exists()
    dbname = catalog.split("dbname=")[1].split()[0]
    # The catalog is PostgreSQL's: DuckLake's metadata tables are there, naming the Parquet file.
    assert int(postgres.sql(dbname, "SELECT count(*) FROM ducklake_data_file")) >= 1
    assert postgres.sql(dbname, "SELECT value FROM ducklake_metadata WHERE key = 'data_path'") == f"{files}/"
    assert list(files.rglob("*.parquet")), "300 rows go to a Parquet file under the data path"

    with Lake(tmp_path / "elsewhere", catalog=catalog) as again:  # a new connection, no local catalog
        assert again.count("prompts") == 300 and again.count("runs") == 1
        row = again.read("prompts", "prompt_id = 'p7'").to_dicts()[0]
        assert row["messages"] == [{"role": "user", "content": "question p7"}]
        assert again.data_path == f"{files}/"
    assert not (tmp_path / "elsewhere").exists()


def test_commit_is_idempotent(tmp_path, catalog):
    rows = _prompts("p", 20)
    with Lake(tmp_path / "lake", catalog=catalog, data_path=str(tmp_path / "files")) as lake:
        assert lake.commit({"prompts": rows}) == {"prompts": 20}
        assert lake.commit({"prompts": rows + _prompts("q", 2)}) == {"prompts": 2}
        assert lake.commit({"prompts": rows}) == {"prompts": 0}
        assert lake.count("prompts") == 22


def test_read_only_and_snapshot_opens(tmp_path, catalog):
    with Lake(tmp_path / "lake", catalog=catalog, data_path=str(tmp_path / "files")) as lake:
        lake.commit({"prompts": _prompts("a", 5)})
        first = lake.snapshot_id()
        lake.commit({"prompts": _prompts("b", 3)})
    missing_root = tmp_path / "no-such-dir"
    with Lake(missing_root, read_only=True, catalog=catalog) as reader:
        assert reader.count("prompts") == 8
        assert reader.snapshot_of_run(str(first)) == first
        with pytest.raises(UserError, match="read-only"):
            reader.commit({"prompts": _prompts("c", 1)})
    with Lake(missing_root, snapshot=first, catalog=catalog) as old:  # what `--as-of` opens
        assert old.count("prompts") == 5
        assert set(old.read("prompts")["prompt_id"]) == {f"a{i}" for i in range(5)}
    assert not missing_root.exists()
    with pytest.raises(UserError, match="has no snapshot 999"):
        Lake(missing_root, snapshot=999, catalog=catalog)


def test_read_only_on_an_empty_database_says_no_lake(tmp_path, catalog):
    with pytest.raises(UserError, match=r"^no lake at postgres:dbname=lake_\d+ .*run `curate run` first"):
        Lake(tmp_path / "lake", read_only=True, catalog=catalog)


def test_unreachable_catalog_is_a_one_line_user_error(tmp_path, postgres):
    port = _free_port()
    catalog = f"postgres:{postgres.conninfo('curate', port=port)} password=sekrit"
    with pytest.raises(UserError) as caught:
        Lake(tmp_path / "lake", catalog=catalog)
    message = str(caught.value)
    assert message.startswith(f"cannot open the lake catalog postgres:dbname=curate host=127.0.0.1 port={port} ")
    assert "password=***" in message and "sekrit" not in message
    assert "Connection refused" in message and "\n" not in message
    assert caught.value.__cause__ is None  # DuckDB's message, password included, is not chained


def test_redact_hides_passwords_in_both_connection_forms():
    assert redact("postgres:dbname=x password=s3cr3t host=h") == "postgres:dbname=x password=*** host=h"
    assert redact("postgres:dbname=x password='a b' host=h") == "postgres:dbname=x password=*** host=h"
    assert redact("postgres:postgresql://me:s3cr3t@db:5432/x") == "postgres:postgresql://me:***@db:5432/x"
    assert redact("postgres:dbname=x host=h") == "postgres:dbname=x host=h"


def test_open_lake_takes_config_then_env_then_default(tmp_path, monkeypatch, catalog):
    data_dir = tmp_path / "data"
    env_catalog, config_catalog = str(tmp_path / "env.ducklake"), str(tmp_path / "config.ducklake")

    with open_lake(data_dir) as lake:  # nothing set: the local default
        assert lake.location == str(data_dir / "lake")
        assert lake.data_path == f"{data_dir / 'lake' / 'files'}/"
    assert (data_dir / "lake" / "catalog.sqlite").exists()

    monkeypatch.setenv("CURATE_LAKE_CATALOG", env_catalog)
    monkeypatch.setenv("CURATE_LAKE_DATA_PATH", str(tmp_path / "env-files"))
    with open_lake(data_dir) as lake:
        assert lake.location == env_catalog
        assert lake.data_path == f"{tmp_path / 'env-files'}/"

    config = LakeConfig(catalog=config_catalog, data_path=str(tmp_path / "config-files"))
    with open_lake(data_dir, config) as lake:
        assert lake.location == config_catalog
        assert lake.data_path == f"{tmp_path / 'config-files'}/"
    # Each setting on its own: the config's catalog with the environment's data path.
    monkeypatch.setenv("CURATE_LAKE_CATALOG", catalog)
    with open_lake(tmp_path / "other", LakeConfig(catalog=catalog)) as lake:
        assert lake.location == catalog
        assert lake.data_path == f"{tmp_path / 'env-files'}/"
    with open_lake(tmp_path / "other", read_only=True) as lake:  # the env's postgres catalog
        assert lake.location == catalog


def test_cli_query_reads_the_postgres_lake_from_the_environment(tmp_path, catalog):
    with Lake(tmp_path / "writer", catalog=catalog, data_path=str(tmp_path / "files")) as lake:
        lake.commit({"prompts": _prompts("p", 4)})
        first = lake.snapshot_id()
        lake.commit({"prompts": _prompts("q", 3)})
    command = [sys.executable, "-m", "curate.cli.main", "query", "select count(*) as n_prompts from prompts",
               "--data-dir", str(tmp_path / "empty")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CURATE_")}

    def run(*extra: str, **more_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, *extra], capture_output=True, text=True, timeout=300,
                              env={**env, "COLUMNS": "200", **more_env})

    now = run(CURATE_LAKE_CATALOG=catalog)
    assert now.returncode == 0, now.stdout + now.stderr
    assert "n_prompts" in now.stdout and "│ 7 " in now.stdout
    then = run("--as-of", str(first), CURATE_LAKE_CATALOG=catalog)
    assert then.returncode == 0, then.stdout + then.stderr
    assert "│ 4 " in then.stdout
    local = run()  # without the variable: the (absent) local lake under --data-dir
    assert local.returncode == 2 and "no lake at" in local.stderr


def test_object_storage_data_path_loads_httpfs_from_the_catalog(tmp_path, catalog, monkeypatch):
    # No S3 here: making a lake and its (empty) tables writes no data file, so the bucket is never reached.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with Lake(tmp_path / "lake", catalog=catalog, data_path="s3://curate-test-bucket/lake") as lake:
        assert lake.data_path == "s3://curate-test-bucket/lake/"
    with Lake(tmp_path / "reader", read_only=True, catalog=catalog) as reader:  # not told the data path
        loaded = dict(reader.con.execute("SELECT extension_name, loaded FROM duckdb_extensions() "
                                         "WHERE extension_name IN ('httpfs', 'aws')").fetchall())
        assert loaded == {"httpfs": True, "aws": True}
        assert reader.count("prompts") == 0
    with pytest.raises(UserError, match="unsupported lake data path 'az://c/lake'"):
        Lake(tmp_path / "lake", catalog=catalog, data_path="az://c/lake")


@pytest.mark.slow
def test_pipeline_runs_on_a_postgres_catalog(tmp_path, catalog, tiny_generator):
    """The whole build on tiny models with [lake] in PostgreSQL, twice: the second run adds nothing,
    and a run marked running by another machine is not touched."""
    from curate.config import load_config
    from curate.pipeline import Pipeline
    from tests.helpers import GOOD_ROWS, write_config, write_prompts

    config_path = write_config(tmp_path / "run.toml", write_prompts(tmp_path / "prompts.jsonl"), tiny_generator,
                               None, n=2, export=None)
    config_path.write_text(config_path.read_text() + f'\n[lake]\ncatalog = "{catalog}"\ndata_path = "files"\n')
    config = load_config(config_path)
    with Lake(tmp_path / "other-machine", catalog=catalog, data_path=str(tmp_path / "files")) as other:
        other.commit({"runs": [run_row()]})  # status running: another machine's run in progress
    counts = []
    for data in ("data-1", "data-2"):
        pipeline = Pipeline(config, tmp_path / data)
        state = pipeline.run_all()
        pipeline.close()
        counts.append(state.counts)
    assert counts[0]["candidates_new"] == 2 * len(GOOD_ROWS) and counts[0]["scores_new"] > 0
    assert counts[1].get("candidates_new", 0) == 0 and counts[1]["candidates_reused"] == 2 * len(GOOD_ROWS)
    assert counts[1].get("scores_new", 0) == 0 and counts[1]["pairs_new"] == 0
    with Lake(tmp_path / "reader", catalog=catalog, read_only=True) as lake:
        assert lake.count("candidates") == 2 * len(GOOD_ROWS)
        statuses = lake.query("SELECT status, count(*) AS n FROM runs GROUP BY 1 ORDER BY 1")
    assert dict(statuses.iter_rows()) == {"completed": 2, "running": 1}
    assert not (tmp_path / "data-1" / "lake" / "catalog.sqlite").exists()
