"""The lake: a DuckLake catalog (a DuckDB file) with Parquet data files.

Every write goes through `commit`, one lake transaction (one snapshot) per call. Rows
whose key already exists are skipped, so appends are idempotent and a resumed run never
duplicates a row.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from curate import schemas
from curate.errors import UserError

LAKE_ALIAS = "lake"


def ducklake_extension_path() -> Path:
    """The signed ducklake extension shipped by `duckdb-extension-ducklake` (no network needed)."""
    import duckdb_extension_ducklake

    root = Path(duckdb_extension_ducklake.__file__).parent / "extensions"
    found = sorted(root.glob(f"v{duckdb.__version__}/ducklake.duckdb_extension"))
    if not found:
        raise UserError(
            f"no ducklake extension for duckdb {duckdb.__version__} under {root}; "
            "install the matching duckdb-extension-ducklake"
        )
    return found[0]


class Lake:
    """A connection to the lake at `root` (catalog `root/catalog.ducklake`, files `root/files/`)."""

    def __init__(self, root: Path | str, read_only: bool = False, snapshot: int | None = None):
        self.root = Path(root)
        self.read_only = read_only or snapshot is not None
        catalog = self.root / "catalog.ducklake"
        if self.read_only and not catalog.exists():
            raise UserError(f"no lake at {self.root}: run `curate run` first")
        self.root.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect()
        self.con.execute(f"LOAD '{ducklake_extension_path()}'")
        options = "READ_ONLY" if self.read_only else f"DATA_PATH '{self.root / 'files'}/'"
        if snapshot is not None:  # the lake as it was at that snapshot
            options += f", SNAPSHOT_VERSION {int(snapshot)}"
        try:
            self.con.execute(f"ATTACH 'ducklake:{catalog}' AS {LAKE_ALIAS} ({options})")
        except (duckdb.IOException, duckdb.BinderException) as exc:
            if "lock" in str(exc).lower() or "file handle conflict" in str(exc).lower():
                raise UserError(f"the lake at {self.root} is in use by another curate process") from exc
            raise
        self.con.execute(f"USE {LAKE_ALIAS}")
        if not self.read_only:
            self._create_tables()
            self._create_views()

    def _create_tables(self) -> None:
        existing = self.table_names()
        missing = [t for t in schemas.TABLES if t not in existing]
        if not missing:
            return
        self.con.execute("BEGIN")
        if not existing:
            self.con.execute(f"CALL {LAKE_ALIAS}.set_option('parquet_compression', 'zstd')")
        for name in missing:
            self.con.execute(schemas.table(name).create_sql(f"{LAKE_ALIAS}.{name}"))
        self.con.execute("COMMIT")

    def _create_views(self) -> None:
        """Create the analyst views; replace them all (one snapshot) when their definitions
        changed, which a marker view holding a hash of the definitions tells."""
        from curate.views import VIEWS, views_version

        wanted = views_version()
        try:
            current = self.con.execute(f"SELECT version FROM {LAKE_ALIAS}.curate_views_version").fetchone()[0]
        except duckdb.CatalogException:
            current = None
        if current == wanted:
            return
        with self.transaction():
            for name, sql in VIEWS.items():
                self.con.execute(f"CREATE OR REPLACE VIEW {LAKE_ALIAS}.{name} AS {sql}")
            self.con.execute(f"CREATE OR REPLACE VIEW {LAKE_ALIAS}.curate_views_version AS SELECT '{wanted}' AS version")

    def snapshot_of_run(self, run: str) -> int:
        """The last snapshot at or before the end of a run (a run id), or a snapshot number."""
        if run.isdigit():
            return int(run)
        row = self.con.execute(
            f"SELECT max(s.snapshot_id) FROM {LAKE_ALIAS}.snapshots() s, {LAKE_ALIAS}.runs r "
            "WHERE r.run_id = ? AND s.snapshot_time <= coalesce(r.finished_at, now())", [run]).fetchone()
        if row is None or row[0] is None:
            raise UserError(f"no run {run!r} in the lake (see: curate query \"select run_id, status from runs\")")
        return row[0]

    def close(self) -> None:
        self.con.close()

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

    def existing_ids(self, table: str, ids: list[str], column: str | None = None) -> set[str]:
        """Which of `ids` are already stored in `table` (in its key column unless named)."""
        if not ids:
            return set()
        key = column or schemas.table(table).key
        wanted = pa.table({"id": pa.array(list(ids), pa.string())})
        self.con.register("_wanted_ids", wanted)
        try:
            rows = self.con.execute(
                f"SELECT DISTINCT t.{key} FROM {LAKE_ALIAS}.{table} t JOIN _wanted_ids w ON t.{key} = w.id"
            ).fetchall()
        finally:
            self.con.unregister("_wanted_ids")
        return {r[0] for r in rows}

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

    def _insert_new(self, table: str, conformed: pa.Table) -> int:
        key = schemas.table(table).key
        self.con.register("_incoming", conformed)
        try:
            inserted = self.con.execute(
                f"INSERT INTO {LAKE_ALIAS}.{table} BY NAME "
                f"SELECT * FROM (SELECT DISTINCT ON ({key}) * FROM _incoming ORDER BY {key}) i "
                f"WHERE NOT EXISTS (SELECT 1 FROM {LAKE_ALIAS}.{table} t WHERE t.{key} = i.{key})"
            ).fetchone()
            return inserted[0]
        finally:
            self.con.unregister("_incoming")

    def commit(self, tables: dict[str, pa.Table | list[dict]]) -> dict[str, int]:
        """Append rows to several tables in one snapshot; returns rows added per table."""
        if self.read_only:
            raise UserError("the lake is open read-only")
        added = {}
        with self.transaction():
            for name, rows in tables.items():
                rows = schemas.conform(name, rows)
                added[name] = self._insert_new(name, rows) if rows.num_rows else 0
        return added

    def update_run(self, run_id: str, **values) -> None:
        """Runs are the one mutable table: status, finish time and counts change as a run ends."""
        assignments = ", ".join(f"{column} = ?" for column in values)
        with self.transaction():
            self.con.execute(
                f"UPDATE {LAKE_ALIAS}.runs SET {assignments} WHERE run_id = ?", [*values.values(), run_id]
            )
