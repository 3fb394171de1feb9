"""The lake: a DuckLake catalog with Parquet data files.

The catalog is a SQLite file (`root/catalog.sqlite`, the local default), a DuckDB file or a
PostgreSQL database; the data path is a local folder (`root/files/`) or object storage (s3://,
gs://, r2://, https://). Every write goes through `commit`, one lake transaction (one snapshot) per
call. Rows whose key already exists are skipped, so appends are idempotent and a resumed run never
duplicates a row.

A SQLite catalog (WAL journal) lets readers in other processes open the lake while a run writes:
one writer at a time holds `<catalog>.lock`, and a reader sees the snapshot that was the latest
when it opened, for as long as it stays open. A lake whose catalog is the older DuckDB file
(`root/catalog.ducklake`) is moved to SQLite by its next writer (curate.lake.migrate).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import sqlite3
import tempfile
from contextlib import closing, contextmanager
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import UserError
from curate.lake import audit_facts, schemas
from curate.lake.extensions import extension_path
from curate.lake.migrate import migrate_to_sqlite
from curate.lake.pair_facts import SPLIT_RUNS, backfill_sql, keep_facts_of_new_pairs, merge_sql
from curate.lake.views import views, views_version
from curate.progress import log

LAKE_ALIAS = "lake"
# Tables whose commits keep facts of their new rows, in this order, in the commit's snapshot:
# table -> hook(lake, new rows) (curate.lake.pair_facts, curate.lake.audit_facts)
FACTS = {"pairs": keep_facts_of_new_pairs, "pair_audits": audit_facts.keep_facts_of_new_audits}
POSTGRES = "postgres:"
SQLITE = "sqlite:"
CATALOG_FILE = "catalog.sqlite"
LEGACY_CATALOG_FILE = "catalog.ducklake"  # a DuckDB file: one process at a time, readers included
BUSY_TIMEOUT_MS = 60_000  # how long a SQLite catalog waits for the other process's lock
# Data paths DuckDB reaches through its httpfs extension; the s3 ones also get AWS credentials.
HTTPFS_SCHEMES = ("s3", "s3a", "s3n", "gs", "gcs", "r2", "http", "https")
S3_SCHEMES = ("s3", "s3a", "s3n")


def redact(location: str) -> str:
    """`location` without its password (libpq `password=...`, or a URI's `user:password@`)."""
    location = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", r"\1***", location, flags=re.I)
    return re.sub(r"(://[^:/@\s]+:)[^@\s]*@", r"\1***@", location)


def _quote(text: str) -> str:
    return text.replace("'", "''")


def scheme_of(location: str) -> str | None:
    """The URL scheme (or `postgres`) a location starts with; None for a plain path."""
    match = re.match(r"([a-z][a-z0-9+.-]*):", location, re.I)
    return match.group(1).lower() if match else None


def _stored_data_path(catalog_file: Path, is_sqlite: bool) -> str | None:
    """The data path a local catalog records (None: no lake there yet)."""
    if not catalog_file.exists():
        return None
    query = "SELECT value FROM ducklake_metadata WHERE key = 'data_path'"
    try:
        if is_sqlite:
            with closing(sqlite3.connect(f"{catalog_file.resolve().as_uri()}?mode=ro", uri=True)) as con:
                row = con.execute(query).fetchone()
        else:
            with duckdb.connect(str(catalog_file), read_only=True) as con:
                row = con.execute(query).fetchone()
    except (sqlite3.Error, duckdb.Error):
        return None  # not a lake (yet): ATTACH says what is wrong
    return row[0] if row else None


def _moved(stored: str, default: str) -> bool:
    """Whether a local lake's recorded data path no longer leads to its files: relative (to the
    working directory of whoever made the lake) or a folder that is gone; a remote path or
    another folder that exists is the lake's own choice."""
    if scheme_of(stored) is not None:
        return False
    path = Path(stored)
    if not path.is_absolute():
        return True
    return path != Path(default) and not path.exists()


def _take_writer_lock(catalog_file: Path, location: str):
    """An exclusive lock on `<catalog>.lock` for as long as the writer is open (the kernel drops
    it when the process dies): two writers on one SQLite catalog would corrupt it."""
    handle = open(catalog_file.with_name(catalog_file.name + ".lock"), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"the lake at {location} is in use by another curate process (a run writes to it)") from None
    return handle


def _one_per_key(incoming: pa.Table, key: str) -> str:
    """The relation of _incoming's rows, one per key (the first by key order): the rows as they are
    when their keys are distinct already (as they mostly are), without sorting wide rows to find out."""
    if pc.count_distinct(incoming.column(key)).as_py() == incoming.num_rows:
        return "_incoming"
    return f"(SELECT DISTINCT ON ({key}) * FROM _incoming ORDER BY {key})"


def open_lake(data_dir: Path | str, lake_config=None, read_only: bool = False,
              snapshot: int | None = None) -> "Lake":
    """The lake of `data_dir`. Catalog and data path each come from the run config's [lake]
    (`lake_config`), else $CURATE_LAKE_CATALOG / $CURATE_LAKE_DATA_PATH, else the local
    defaults under `data_dir/lake`."""
    catalog = getattr(lake_config, "catalog", None) or os.environ.get("CURATE_LAKE_CATALOG") or None
    data_path = getattr(lake_config, "data_path", None) or os.environ.get("CURATE_LAKE_DATA_PATH") or None
    return Lake(Path(data_dir) / "lake", read_only=read_only, snapshot=snapshot, catalog=catalog,
                data_path=data_path)


class Lake:
    """A connection to the lake at `root`: catalog `root/catalog.ducklake` and files under
    `root/files/`, unless `catalog` (a DuckDB file or `postgres:<libpq connection string>`) and
    `data_path` (a folder or an s3://, gs://, r2://, https:// prefix) say otherwise."""

    alias = LAKE_ALIAS  # the lake's name in this connection's SQL (its tables are alias.table)

    def __init__(self, root: Path | str, read_only: bool = False, snapshot: int | None = None,
                 catalog: str | None = None, data_path: str | None = None):
        self.root = Path(root)
        self.read_only = read_only or snapshot is not None
        self.is_postgres = bool(catalog) and catalog.startswith(POSTGRES)
        self.is_sqlite = False
        self._writer_lock = None
        if catalog and not self.is_postgres and not catalog.startswith(SQLITE) and scheme_of(catalog):
            raise UserError(f"unsupported lake catalog {redact(catalog)!r}: "
                            "give a SQLite file (sqlite:PATH), a DuckDB file or postgres:<connection string>")
        if self.is_postgres:
            target = catalog
            self.location = redact(catalog)  # what messages and reports name
        else:
            catalog_file, self.is_sqlite = self._local_catalog(catalog)
            target = (SQLITE if self.is_sqlite else "") + str(catalog_file)
            self.location = str(catalog_file if catalog else self.root)
            if self.read_only and not catalog_file.exists():
                raise UserError(f"no lake at {self.location}: run `curate run` first")
        explicit, data_path = data_path is not None, self._data_path(data_path)
        self._scratch = None
        self._catalog_folder = None if self.is_postgres else catalog_file.resolve().parent
        if not self.is_postgres and self.read_only and catalog_file.exists() and not os.access(catalog_file.parent, os.W_OK):
            catalog_file = self._read_only_copy(catalog_file)  # SQLite cannot open its WAL there
            target = (SQLITE if self.is_sqlite else "") + str(catalog_file)
        # A local lake records where its files are; curate reads them from the catalog's own folder
        # whatever that record says (written relative to another working directory, or before
        # the lake moved), and its next writer repairs the record (docs/architecture.md, "Lake").
        stored = None if self.is_postgres or explicit else _stored_data_path(catalog_file, self.is_sqlite)
        self._relocated = stored is not None and _moved(stored, data_path)
        self._data_path_in_use = data_path if self._relocated else None

        self.con = duckdb.connect()
        self._loaded: set[str] = set()
        self._load("ducklake")
        if self.is_postgres:
            self._load("postgres_scanner")
        if self.is_sqlite:
            self._load("sqlite_scanner")
        self._load_object_storage(data_path)
        options = ["READ_ONLY"] if self.read_only else []
        if snapshot is not None:  # the lake as it was at that snapshot
            options.append(f"SNAPSHOT_VERSION {int(snapshot)}")
        set_data_path = f"DATA_PATH '{_quote(data_path)}'"
        # A shared catalog keeps the data path it was made with: a writer that was not told one
        # names the default only to make a new lake.
        if self._relocated:
            options += [set_data_path, "OVERRIDE_DATA_PATH true"]
        elif not self.read_only and (explicit or (not self.is_postgres and stored is None)):
            options.append(set_data_path)
        try:
            if not self.read_only and not self.is_postgres:
                self._prepare_local(catalog_file, catalog is None, options)
            if self.is_sqlite:
                options.append(f"META_BUSY_TIMEOUT {BUSY_TIMEOUT_MS}")
                if not self.read_only:
                    options.append("META_JOURNAL_MODE 'WAL'")  # readers never wait for the writer
            self._attach(target, options, None if self.read_only else set_data_path)
        except duckdb.Error as exc:
            self.close()
            error = self._attach_error(exc, snapshot)
            if error is None:
                raise
            # the cause of a postgres failure repeats the connection string, password included
            raise error from (None if self.is_postgres else exc)
        except BaseException:
            self.close()
            raise
        self._load_object_storage(self.data_path)  # the catalog's own, when it was not given
        self.con.execute(f"USE {LAKE_ALIAS}")
        if not self.read_only:
            if self._relocated:
                self._repair_data_path(stored, data_path)
            self._create_tables()
            self._create_views()
        elif snapshot is None:
            # One transaction for the reader's life: every query sees the snapshot that was the
            # latest at this point, never part of a commit that lands meanwhile.
            self.con.execute("BEGIN TRANSACTION")

    def _local_catalog(self, catalog: str | None) -> tuple[Path, bool]:
        """The catalog file and whether it is SQLite. The default is `root/catalog.sqlite`; a lake
        that still has only the older DuckDB file is read from it (its next writer migrates it)."""
        if catalog:
            if catalog.startswith(SQLITE):
                return Path(catalog[len(SQLITE):]).expanduser(), True
            return Path(catalog).expanduser(), False
        current, legacy = self.root / CATALOG_FILE, self.root / LEGACY_CATALOG_FILE
        if self.read_only and not current.exists() and legacy.exists():
            return legacy, False
        return current, True

    def _prepare_local(self, catalog_file: Path, default: bool, options: list[str]) -> None:
        """A writer of a local catalog: take the writer lock, migrate the older DuckDB catalog of
        the default location, and make a new SQLite lake whole (tables and views) before it
        appears under its name, so a reader never finds a half-made lake."""
        catalog_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.is_sqlite:
            return  # a DuckDB file locks itself
        self._writer_lock = _take_writer_lock(catalog_file, self.location)
        legacy = self.root / LEGACY_CATALOG_FILE
        if default and legacy.exists():
            if not catalog_file.exists():
                migrate_to_sqlite(legacy, catalog_file)
            legacy.rename(legacy.with_name(legacy.name + ".migrated"))
        if catalog_file.exists():
            return
        partial = catalog_file.with_name(catalog_file.name + ".partial")
        for leftover in (partial, *(partial.with_name(partial.name + s) for s in ("-journal", "-wal", "-shm"))):
            leftover.unlink(missing_ok=True)
        self._attach(SQLITE + str(partial), options, None)
        self.con.execute(f"USE {LAKE_ALIAS}")
        self._create_tables()
        self._create_views()
        self.con.execute("USE memory")
        self.con.execute(f"DETACH {LAKE_ALIAS}")
        os.replace(partial, catalog_file)

    def _read_only_copy(self, catalog_file: Path) -> Path:
        """A private copy of a catalog on read-only media (with its WAL), for one reader."""
        self._scratch = tempfile.TemporaryDirectory(prefix="curate-catalog-")
        copy = Path(self._scratch.name) / catalog_file.name
        for suffix in ("", "-wal"):
            source = catalog_file.with_name(catalog_file.name + suffix)
            if source.exists():
                shutil.copyfile(source, copy.with_name(copy.name + suffix))
        return copy

    def _repair_data_path(self, stored: str, data_path: str) -> None:
        """Record the files' real folder in the catalog, once every file the lake lists is there."""
        missing = [path for table in self.table_names() for (path,) in self.con.execute(
            f"SELECT data_file FROM ducklake_list_files('{LAKE_ALIAS}', '{table}')").fetchall()
            if not os.path.exists(path)]
        if missing:
            log(f"lake: the catalog records its files at {stored!r}; {len(missing)} are not under {data_path} "
                f"either (first: {missing[0]}): left as it is")
            return
        self.con.execute(f"UPDATE __ducklake_metadata_{LAKE_ALIAS}.ducklake_metadata SET value = ? "
                         "WHERE key = 'data_path'", [data_path])
        log(f"lake: the catalog recorded its files at {stored!r}; now at {data_path}")

    def _data_path(self, data_path: str | None) -> str:
        if data_path is None:
            return f"{self.root.resolve() / 'files'}/"
        scheme = scheme_of(data_path)
        if scheme is None:
            return f"{Path(data_path).expanduser().resolve()}/"
        if scheme not in HTTPFS_SCHEMES:
            raise UserError(f"unsupported lake data path {data_path!r}: give a folder or an "
                            f"{', '.join(s + '://' for s in HTTPFS_SCHEMES)} prefix")
        return data_path if data_path.endswith("/") else data_path + "/"

    def _load(self, extension: str) -> None:
        if extension not in self._loaded:
            self.con.execute(f"LOAD '{extension_path(extension)}'")
            self._loaded.add(extension)

    def _attach(self, target: str, options: list[str], set_data_path: str | None) -> None:
        """ATTACH the lake, adding what the catalog turns out to need: httpfs when the data path
        it records is remote, or `set_data_path` when there is no lake yet."""
        while True:
            options_sql = f" ({', '.join(options)})" if options else ""
            try:
                self.con.execute(f"ATTACH '{_quote('ducklake:' + target)}' AS {LAKE_ALIAS}{options_sql}")
                return
            except duckdb.Error as exc:
                if "extension 'httpfs'" in str(exc) and "httpfs" not in self._loaded:
                    self._load("httpfs")
                elif "data_path is not set" in str(exc) and set_data_path and set_data_path not in options:
                    options = [*options, set_data_path]
                else:
                    raise

    def own_folders(self) -> list[str] | None:
        """The local folders a query of this lake reads (its files, its catalog's folder, a
        read-only copy of the catalog), or None where it reads more than local folders (a
        PostgreSQL catalog, object storage)."""
        data_path = self.data_path
        if self.is_postgres or scheme_of(data_path):
            return None
        folders = [Path(data_path), self._catalog_folder]
        if self._scratch is not None:
            folders.append(Path(self._scratch.name))
        return [str(folder.resolve()).rstrip("/") + "/" for folder in folders]

    @property
    def data_path(self) -> str:
        """Where the lake's Parquet files are: as its catalog records it, or the catalog's own
        folder's `files/` where that record is relative or names a folder that is gone."""
        if self._data_path_in_use:
            return self._data_path_in_use
        return self.con.execute(
            f"SELECT value FROM {LAKE_ALIAS}.options() WHERE option_name = 'data_path'").fetchone()[0]

    def _load_object_storage(self, data_path: str) -> None:
        scheme = scheme_of(data_path)
        if scheme in HTTPFS_SCHEMES:
            self._load("httpfs")
        if scheme not in S3_SCHEMES or "aws" in self._loaded:
            return
        self._load("aws")
        # An s3 secret the user persisted (CREATE PERSISTENT SECRET) wins; otherwise the AWS
        # credential chain (AWS_* variables, ~/.aws, instance role). Finding no credentials is
        # not an error here: a public bucket needs none, and a private one fails with S3's reason.
        if not self.con.execute("SELECT 1 FROM duckdb_secrets() WHERE type = 's3'").fetchall():
            try:
                self.con.execute("CREATE SECRET curate_s3 (TYPE s3, PROVIDER credential_chain)")
            except duckdb.Error:
                pass

    def _attach_error(self, exc: duckdb.Error, snapshot: int | None) -> UserError | None:
        """A one-line UserError for what a user can fix (None: raise DuckDB's error as it is)."""
        message = str(exc)
        lowered = message.lower()
        if not self.is_postgres and ("lock" in lowered or "file handle conflict" in lowered):
            return UserError(f"the lake at {self.location} is in use by another curate process")
        if "creating a new ducklake is explicitly disabled" in lowered:
            return UserError(f"no lake at {self.location}: run `curate run` first")
        if "no snapshot found" in lowered:
            return UserError(f"the lake at {self.location} has no snapshot {snapshot}")
        if "does not match existing data path" in lowered:
            return UserError(redact(message.splitlines()[0]))
        if self.is_postgres:
            reason = re.search(r'Unable to connect to Postgres at "[^"]*": (.*)', message)
            reason = (reason.group(1) if reason else message.splitlines()[0]).strip()
            return UserError(f"cannot open the lake catalog {self.location}: {redact(reason)}")
        return None

    def _create_tables(self) -> None:
        existing = self.table_names()
        missing = [t for t in schemas.TABLES if t not in existing]
        if audit_facts.TABLE in existing:
            self._add_missing_columns(audit_facts.TABLE)
        if not missing:
            return
        self.con.execute("BEGIN")
        if not existing:
            self.con.execute(f"CALL {LAKE_ALIAS}.set_option('parquet_compression', 'zstd')")
        for name in missing:
            self.con.execute(schemas.table(name).create_sql(f"{LAKE_ALIAS}.{name}"))
        if "pair_facts" in missing and "pairs" in existing:  # a lake from before them: fill them once
            for statement in backfill_sql(LAKE_ALIAS):
                self.con.execute(statement)
        if audit_facts.TABLE in missing and "pair_audits" in existing:
            self.con.execute(audit_facts.backfill_sql(LAKE_ALIAS))
        self.con.execute("COMMIT")

    def _add_missing_columns(self, table: str) -> None:
        """Columns the declaration gained since the lake was made, added as nulls (one snapshot)."""
        have = {r[0] for r in self.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ?",
            [LAKE_ALIAS, table]).fetchall()}
        declared = schemas.table(table)
        added = [f for f in declared.fields if f.name not in have]
        if not added:
            return
        with self.transaction():
            for field in added:
                self.con.execute(f"ALTER TABLE {LAKE_ALIAS}.{table} ADD COLUMN {field.name} "
                                 f"{schemas._parse(field.type)[1]}")

    def _create_views(self) -> None:
        """Create the analyst views; replace them all (one snapshot) when their definitions
        changed, which a marker view holding a hash of the definitions tells."""
        wanted = views_version()
        try:
            current = self.con.execute(f"SELECT version FROM {LAKE_ALIAS}.curate_views_version").fetchone()[0]
        except duckdb.CatalogException:
            current = None
        if current == wanted:
            return
        with self.transaction():
            for name, sql in views().items():
                self.con.execute(f"CREATE OR REPLACE VIEW {LAKE_ALIAS}.{name} AS {sql}")
            self.con.execute(f"CREATE OR REPLACE VIEW {LAKE_ALIAS}.curate_views_version AS SELECT '{wanted}' AS version")

    def snapshot_of_run(self, run: str) -> int:
        """The snapshot at the end of a run (a run id): the one that wrote its finish, so it holds
        everything the run wrote and its final runs row; the latest one while a run has no finish.
        A snapshot number is taken as it is."""
        if run.isdigit():
            return int(run)
        row = self.con.execute(f"SELECT finished_at FROM {LAKE_ALIAS}.runs WHERE run_id = ?", [run]).fetchone()
        if row is None:
            raise UserError(f"no run {run!r} in the lake (see: curate query \"select run_id, status from runs\")")
        finished = row[0]
        if finished is None:
            return self.snapshot_id()
        # finished_at is taken just before the update that stores it commits: the first snapshot
        # after it whose runs row holds that finish is the run's last.
        later = self.con.execute(f"SELECT snapshot_id FROM {LAKE_ALIAS}.snapshots() WHERE snapshot_time >= ? "
                                 "ORDER BY snapshot_id", [finished]).fetchall()
        for (snapshot,) in later:
            at = self.con.execute(f"SELECT finished_at FROM {LAKE_ALIAS}.runs AT (VERSION => {int(snapshot)}) "
                                  "WHERE run_id = ?", [run]).fetchone()
            if at is not None and at[0] == finished:
                return snapshot
        before = self.con.execute(f"SELECT max(snapshot_id) FROM {LAKE_ALIAS}.snapshots() WHERE snapshot_time <= ?",
                                  [finished]).fetchone()[0]
        return before if before is not None else self.snapshot_id()

    def close(self) -> None:
        self.con.close()
        if self._writer_lock is not None:
            self._writer_lock.close()  # releases the lock
            self._writer_lock = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __enter__(self) -> "Lake":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # reading -------------------------------------------------------------------------

    def table_names(self) -> set[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_type = 'BASE TABLE'",
            [LAKE_ALIAS]
        ).fetchall()
        return {r[0] for r in rows}

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        return pl.from_arrow(self.con.execute(sql, params or []).to_arrow_table())

    def read(self, table: str, where: str = "") -> pl.DataFrame:
        sql = f"SELECT * FROM {LAKE_ALIAS}.{table}" + (f" WHERE {where}" if where else "")
        return self.query(sql)

    def no_rows(self, table: str) -> pl.DataFrame:
        """The table's columns as stored (an older lake's may lack newer ones), no row."""
        return self.query(f"SELECT * FROM {LAKE_ALIAS}.{table} LIMIT 0")

    def existing_ids(self, table: str, ids: list[str], column: str | None = None) -> set[str]:
        """Which of `ids` are already stored in `table` (in its key column unless named)."""
        if not ids:
            return set()
        key = column or schemas.table(table).key
        wanted = pa.table({"id": pa.array(list(ids), pa.string())})
        with self.registered("_wanted_ids", wanted):
            rows = self.con.execute(
                f"SELECT DISTINCT t.{key} FROM {LAKE_ALIAS}.{table} t JOIN _wanted_ids w ON t.{key} = w.id"
            ).fetchall()
        return {r[0] for r in rows}

    def rows_where_in(self, table: str, column: str, values: list[str], runs: list[str] | None = None) -> pl.DataFrame:
        """The rows of `table` whose `column` is one of `values` (a join, never a long IN list).

        A join reads every column of every row it scans before it matches, texts included, so
        the rows are read in two passes: the runs that wrote them, from two narrow columns, then
        the rows from those runs' files alone (the runs as constants let DuckLake skip every other
        file by its statistics). `runs`, when the caller knows them, skips the first pass."""
        with self._select_where_in(table, column, values, runs) as (sql, params):
            if sql is None:
                return pl.from_arrow(schemas.table(table).arrow_schema().empty_table())
            return self.query(sql, params)

    @contextmanager
    def _select_where_in(self, table: str, column: str, values: list[str], runs: list[str] | None):
        """(SELECT statement, parameters) of rows_where_in, valid inside the block; (None, None)
        when no row can match."""
        if not values or runs == []:
            yield None, None
            return
        joined = f"FROM {LAKE_ALIAS}.{table} t JOIN _ids ON t.{column} = _ids.id"
        with self.registered("_ids", pl.DataFrame({"id": values}).to_arrow()):
            if runs is None and "run_id" in schemas.table(table).column_names:
                runs = self.query(f"SELECT DISTINCT t.run_id {joined}")["run_id"].to_list()
                if not runs:
                    yield None, None
                    return
            in_runs = f" WHERE t.run_id IN ({', '.join('?' * len(runs))})" if runs else ""
            yield f"SELECT t.* {joined}{in_runs}", list(runs or [])

    @contextmanager
    def grouped_copy(self, table: str, column: str, keys: list[str], groups: list[int],
                     runs: list[str] | None = None):
        """The rows of `table` whose `column` is one of `keys`, each tagged with its key's group
        (`groups`, parallel to `keys`; a key may come more than once, in several groups), read from
        the lake once into local Parquet files, one folder per group; yields `rows(group)`, which
        reads that group's files alone. A step that goes through a run chunk by chunk reads the
        run's files once, not once per chunk, and holds one chunk. The files are removed on exit.
        `runs`: as in rows_where_in."""
        empty = pl.from_arrow(schemas.table(table).arrow_schema().empty_table())
        mapping = pa.table({"key": pa.array(keys, pa.string()), "chunk": pa.array(groups, pa.int64())})
        with tempfile.TemporaryDirectory(prefix=f"curate-{table}-") as scratch:
            distinct = list(dict.fromkeys(keys))
            with self._select_where_in(table, column, distinct, runs) as (sql, params):
                if sql is not None:
                    with self.registered("_chunks", mapping):  # a folder per group, written as rows stream in
                        self.con.execute(
                            f"COPY (SELECT w.*, _chunks.chunk AS _chunk FROM ({sql}) w JOIN _chunks "
                            f"ON w.{column} = _chunks.key) TO '{scratch}/rows' "
                            "(FORMAT parquet, PARTITION_BY (_chunk), OVERWRITE_OR_IGNORE)", params)

            def rows(group: int, columns: tuple[str, ...] = ()) -> pl.DataFrame:
                """The group's rows (only `columns`, when given)."""
                folder = Path(scratch) / "rows" / f"_chunk={group}"
                if not folder.exists():
                    return empty.select(columns) if columns else empty
                wanted = ", ".join(columns) if columns else "*"
                return self.query(f"SELECT {wanted} FROM read_parquet('{folder}/*.parquet', hive_partitioning = false)")

            yield rows

    # named reads of the audit ------------------------------------------------------------

    def pair_ids_to_audit(self, audit_version: str | None = None) -> pl.Series:
        """Every pair's id, in order; with `audit_version`, only those with no audit row of it."""
        unaudited = (" ANTI JOIN (SELECT DISTINCT pair_id FROM pair_audits WHERE audit_version = ?) "
                     "USING (pair_id)" if audit_version is not None else "")
        return self.query(f"SELECT pair_id FROM pairs{unaudited} ORDER BY pair_id",
                          [audit_version] if audit_version is not None else [])["pair_id"]

    def run_and_stopped_runs(self, run_id: str) -> list[str]:
        """`run_id` and every run that stopped before its end (interrupted or failed), sorted."""
        return sorted(set(self.query("SELECT run_id FROM runs WHERE run_id = ? OR status IN ('interrupted', 'failed')",
                                     [run_id])["run_id"]) | {run_id})

    def unaudited_pair_ids_of(self, runs: list[str]) -> pl.Series:
        """The ids of the pairs of `runs` that have no audit verdict yet, in order (the runs as
        constants: the scan of pairs skips the files of every other run)."""
        return self.query(f"""SELECT pair_id FROM (SELECT pair_id FROM pairs WHERE run_id IN ({', '.join('?' * len(runs))}))
                              ANTI JOIN pair_audit_facts USING (pair_id) ORDER BY pair_id""", runs)["pair_id"]

    def audit_summary(self) -> pl.DataFrame:
        """The pair_audit_summary view, by strategy."""
        return self.query("SELECT * FROM pair_audit_summary ORDER BY strategy")

    def pair_strategies(self) -> pl.DataFrame:
        """pair_id and strategy of every pair (two narrow columns, no text)."""
        return self.query("SELECT pair_id, strategy FROM pairs")

    def pair_stats_by_strategy(self) -> pl.DataFrame:
        """Per strategy and scorer: pairs, mean margin and chosen/rejected length ratio (`curate stats`)."""
        return self.query(
            "SELECT strategy, scorer, count(*) AS pairs, round(avg(margin), 3) AS mean_margin, "
            "round(avg(length(chosen)) / nullif(avg(length(rejected)), 0), 3) AS length_ratio "
            "FROM pairs GROUP BY ALL ORDER BY ALL")

    def embeddings_of(self, model: str, text_hashes: list[str]) -> dict:
        """text_hash -> stored vector of `model`, for the hashes that have one."""
        if not text_hashes:
            return {}
        rows = self.query(f"SELECT text_hash, vector FROM {LAKE_ALIAS}.embeddings WHERE model = ? "
                          "AND text_hash IN (SELECT unnest(?::VARCHAR[]))", [model, text_hashes])
        return dict(rows.iter_rows())

    def snapshot_id(self) -> int:
        return self.con.execute(f"SELECT max(snapshot_id) FROM {LAKE_ALIAS}.snapshots()").fetchone()[0]

    def count(self, table: str) -> int:
        return self.con.execute(f"SELECT count(*) FROM {LAKE_ALIAS}.{table}").fetchone()[0]

    # writing -------------------------------------------------------------------------

    @contextmanager
    def transaction(self):
        self.con.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def _insert_new(self, table: str, conformed: pa.Table, checked: bool = False) -> int:
        """Insert the rows whose key is not stored yet (one per key); `checked`: the caller has just
        looked the keys up itself, so the anti-join over the table's keys is skipped."""
        key = schemas.table(table).key
        new = "" if checked else f" WHERE NOT EXISTS (SELECT 1 FROM {LAKE_ALIAS}.{table} t WHERE t.{key} = i.{key})"
        with self.registered("_incoming", conformed):
            return self.con.execute(
                f"INSERT INTO {LAKE_ALIAS}.{table} BY NAME SELECT * FROM {_one_per_key(conformed, key)} i{new}"
            ).fetchone()[0]

    def _insert_new_rows(self, table: str, conformed: pa.Table) -> pa.Table:
        """Insert the rows whose key is not stored yet; returns them (pairs and audit rows have
        facts that follow: curate.lake.pair_facts, curate.lake.audit_facts)."""
        key = schemas.table(table).key
        with self.registered("_incoming", conformed):
            new = self.con.execute(
                f"SELECT * FROM {_one_per_key(conformed, key)} i WHERE NOT EXISTS "
                f"(SELECT 1 FROM {LAKE_ALIAS}.{table} t WHERE t.{key} = i.{key})").to_arrow_table()
        if new.num_rows:
            with self.registered("_new_rows", new):
                self.con.execute(f"INSERT INTO {LAKE_ALIAS}.{table} BY NAME SELECT * FROM _new_rows")
        return new

    @contextmanager
    def registered(self, name: str, table):
        """`table` (Arrow or Polars) visible to this connection's SQL as `name` inside the block."""
        self.con.register(name, table)
        try:
            yield
        finally:
            self.con.unregister(name)

    def merge_pair_stats_parts(self) -> list[str]:
        """Give every run whose pairs came in several commits one pair_stats part per group (from
        its pair_facts, read for those runs only), so that pair_stats adds parts instead of
        recomputing those runs on every read; returns the runs merged."""
        runs = sorted(self.query(SPLIT_RUNS.format(parts=f"{LAKE_ALIAS}.pair_stats_parts"))["run_id"].unique())
        if runs:
            with self.transaction():
                for statement in merge_sql(LAKE_ALIAS, runs):
                    self.con.execute(statement)
        return runs

    def rebuild_audit_facts(self) -> None:
        """pair_audit_facts recomputed from every audit row, in one snapshot: after a whole-lake
        re-audit, which commits its rows without rewriting facts chunk by chunk (each chunk's
        delete would touch every file of the table)."""
        with self.transaction():
            self.con.execute(f"DELETE FROM {LAKE_ALIAS}.{audit_facts.TABLE}")
            self.con.execute(audit_facts.backfill_sql(LAKE_ALIAS))

    def commit(self, tables: dict[str, pa.Table | list[dict]], deferred_facts: tuple[str, ...] = (),
               checked: tuple[str, ...] = ()) -> dict[str, int]:
        """Append rows to several tables in one snapshot; returns rows added per table. A table with
        facts (FACTS: pairs, pair_audits) has them kept by its hook in the same snapshot, after every
        table of the call is in (so new pairs' facts read the prompts and scores committed with them);
        not for the tables in `deferred_facts` (the caller then rebuilds them: rebuild_audit_facts).
        A row whose key is stored already is left out, found by an anti-join over the table's keys,
        except in the `checked` tables of a local lake: their rows' keys were just looked up by the
        caller (existing_ids), and this process, the lake's one writer, has added none since (a
        shared catalog checks anyway)."""
        if self.read_only:
            raise UserError("the lake is open read-only")
        added, new = {}, {}
        with self.transaction():
            for name, rows in tables.items():
                rows = schemas.conform(name, rows)
                if name in FACTS and rows.num_rows:
                    new[name] = self._insert_new_rows(name, rows)
                    added[name] = new[name].num_rows
                else:
                    added[name] = (self._insert_new(name, rows, checked=name in checked and not self.is_postgres)
                                   if rows.num_rows else 0)
            for name, keep_facts in FACTS.items():
                if added.get(name) and name not in deferred_facts:
                    keep_facts(self, new[name])
        return added

    def mark_dead_runs_interrupted(self) -> None:
        """A local lake has one writer, this process: a run still marked running (or exporting) is
        one that died. A shared (PostgreSQL) catalog may have runs going on other machines: those
        stay as they are."""
        if self.is_postgres:
            return
        unfinished = "status IN ('running', 'exporting')"
        if self.con.execute(f"SELECT count(*) FROM {LAKE_ALIAS}.runs WHERE {unfinished}").fetchone()[0]:
            self.con.execute(f"UPDATE {LAKE_ALIAS}.runs SET status = 'interrupted' WHERE {unfinished}")

    def update_run(self, run_id: str, **values) -> None:
        """Runs are the one mutable table: status, finish time and counts change as a run ends."""
        assignments = ", ".join(f"{column} = ?" for column in values)
        with self.transaction():
            self.con.execute(
                f"UPDATE {LAKE_ALIAS}.runs SET {assignments} WHERE run_id = ?", [*values.values(), run_id]
            )
