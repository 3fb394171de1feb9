"""Move a lake's catalog from the older DuckDB file to SQLite, keeping every snapshot.

DuckLake keeps the same tables in either database. Its SQLite catalog stores integers and
booleans as INTEGER and every other value as text, exactly as DuckDB casts it to VARCHAR (rows
inlined in the catalog included), so the copy is one cast per column. The copy is made beside
the catalog, checked against the original through DuckLake (the same snapshots, the same rows in
every table and the same views), and only then put in place. The Parquet files stay where they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from curate.errors import UserError
from curate.lake.extensions import extension_path
from curate.progress import log

INTEGER_TYPES = {"BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT",
                 "UINTEGER", "UBIGINT"}


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name in ("ducklake", "sqlite_scanner"):
        con.execute(f"LOAD '{extension_path(name)}'")
    try:  # the text of a TIMESTAMPTZ is written in UTC, as DuckLake writes it
        con.execute("SET TimeZone = 'UTC'")
    except duckdb.Error:
        pass
    return con


def _columns(con, database: str, table: str) -> list[tuple[str, str]]:
    return con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? "
                       "AND table_name = ? ORDER BY column_index", [database, table]).fetchall()


def _tables(con, database: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY 1", [database]).fetchall()]


def _copy_catalog(con, legacy: Path, partial: Path) -> None:
    con.execute(f"ATTACH '{_quote(str(legacy))}' AS legacy_db (READ_ONLY)")
    con.execute(f"ATTACH '{_quote(str(partial))}' AS fresh_db (TYPE sqlite)")
    try:
        made = set(_tables(con, "fresh_db"))
        con.execute("BEGIN")
        for table in _tables(con, "legacy_db"):
            columns = _columns(con, "legacy_db", table)
            if table in made:  # DuckLake's own table: its first rows give way to the old ones
                types = dict(_columns(con, "fresh_db", table))
                con.execute(f"DELETE FROM fresh_db.{_ident(table)}")
            else:  # rows inlined in the catalog, one table per lake table and schema version
                types = {name: "BIGINT" if kind in INTEGER_TYPES else "VARCHAR" for name, kind in columns}
                con.execute(f"CREATE TABLE fresh_db.{_ident(table)} ("
                            + ", ".join(f"{_ident(n)} {types[n]}" for n, _ in columns) + ")")
            missing = [name for name, _ in columns if name not in types]
            if missing:
                raise UserError(f"cannot migrate the lake catalog: {table} has columns {missing} "
                                "that DuckLake's SQLite catalog lacks")
            names = ", ".join(_ident(n) for n, _ in columns)
            casts = ", ".join(f"CAST({_ident(n)} AS {types[n]})" for n, _ in columns)
            con.execute(f"INSERT INTO fresh_db.{_ident(table)} ({names}) SELECT {casts} FROM legacy_db.{_ident(table)}")
        con.execute("COMMIT")
    finally:
        con.execute("DETACH legacy_db")
        con.execute("DETACH fresh_db")


def _differences(con) -> list[str]:
    """What the two attached lakes `a` (DuckDB catalog) and `b` (SQLite copy) disagree on."""
    problems = []
    snapshots = ("SELECT snapshot_id, snapshot_time, schema_version, changes::VARCHAR, author, commit_message, "
                 "commit_extra_info FROM {}.snapshots()")
    for x, y in (("a", "b"), ("b", "a")):
        if con.execute(f"SELECT count(*) FROM ({snapshots.format(x)} EXCEPT ALL {snapshots.format(y)})").fetchone()[0]:
            problems.append(f"snapshots in {x} missing from {y}")
    listing = ("SELECT table_name, table_type FROM information_schema.tables WHERE table_catalog = ? "
               "ORDER BY ALL")
    tables = con.execute(listing, ["a"]).fetchall()
    if tables != con.execute(listing, ["b"]).fetchall():
        problems.append("different tables or views")
    views = "SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? ORDER BY 1"
    if con.execute(views, ["a"]).fetchall() != con.execute(views, ["b"]).fetchall():
        problems.append("different view definitions")
    for name, kind in tables:
        if kind != "BASE TABLE":
            continue
        for x, y in (("a", "b"), ("b", "a")):
            if con.execute(f"SELECT count(*) FROM (SELECT * FROM {x}.{_ident(name)} "
                           f"EXCEPT ALL SELECT * FROM {y}.{_ident(name)})").fetchone()[0]:
                problems.append(f"rows of {name} in {x} missing from {y}")
    return problems


def migrate_to_sqlite(legacy: Path, target: Path) -> None:
    """Write the SQLite copy of the DuckDB catalog `legacy` to `target` (which must not exist).
    The DuckDB file is left as it is; the caller retires it once the copy is in place."""
    partial = target.with_name(target.name + ".migrating")
    for leftover in (partial, *(partial.with_name(partial.name + s) for s in ("-journal", "-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    con = _connect()
    try:
        # Brings the old catalog to this DuckLake version first (nothing to do when it is current).
        con.execute(f"ATTACH '{_quote('ducklake:' + str(legacy))}' AS legacy_lake")
        data_path = con.execute("SELECT value FROM legacy_lake.options() WHERE option_name = 'data_path'").fetchone()[0]
        count = con.execute("SELECT count(*) FROM legacy_lake.snapshots()").fetchone()[0]
        con.execute("DETACH legacy_lake")
        con.execute(f"ATTACH '{_quote('ducklake:sqlite:' + str(partial))}' AS fresh_lake "
                    f"(DATA_PATH '{_quote(data_path)}')")  # DuckLake makes its tables
        con.execute("DETACH fresh_lake")
        _copy_catalog(con, legacy, partial)
        con.execute(f"ATTACH '{_quote('ducklake:' + str(legacy))}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{_quote('ducklake:sqlite:' + str(partial))}' AS b (READ_ONLY)")
        problems = _differences(con)
    except duckdb.Error as exc:
        problems = [str(exc).splitlines()[0]]
    finally:
        con.close()
    if problems:
        partial.unlink(missing_ok=True)
        raise UserError(f"could not move the lake catalog {legacy} to SQLite ({'; '.join(problems)}); "
                        "it is unchanged")
    os.replace(partial, target)
    log(f"lake: catalog moved from {legacy.name} to {target.name} ({count} snapshots kept); "
        f"the DuckDB file stays as {legacy.name}.migrated")
