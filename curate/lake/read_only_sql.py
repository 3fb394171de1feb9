"""Which SQL `curate query` runs: statements that only read, checked before any of them runs.

DuckDB parses the text into statements (`extract_statements`); each must be a SELECT (SHOW,
DESCRIBE, SUMMARIZE, FROM-first and the table-info PRAGMAs parse as SELECT too) or an EXPLAIN of
one. A SELECT's table functions must be ones that read: DuckLake's maintenance functions, functions
that change settings, and functions that run SQL given as text are refused. The checked
statement objects are what runs, so nothing is parsed twice.
"""

from __future__ import annotations

import json
import re
import threading
import time

import duckdb
import pyarrow as pa

from curate.errors import UserError, one_line

# Table functions that only read. Anything else in a FROM clause is refused: a function DuckDB or
# an extension adds later is refused until someone looks at it.
READ_TABLE_FUNCTIONS = {
    "range", "generate_series", "unnest", "glob", "json_each", "json_tree", "sniff_csv", "repeat",
    "repeat_row", "query_table", "summary", "which_secret", "icu_calendar_names", "pg_timezone_names",
    "test_all_types", "test_vector_types", "parquet_scan", "seq_scan",
}
READ_TABLE_PREFIXES = ("read_", "parquet_", "duckdb_", "pragma_")
# DuckLake's functions that read, called as ducklake_<name>('lake') or lake.<name>().
READ_LAKE_FUNCTIONS = {
    "snapshots", "current_snapshot", "last_committed_snapshot", "table_info", "table_changes",
    "table_insertions", "table_deletions", "list_files", "options", "settings", "scan",
}
_EXPLAIN = re.compile(r"^\s*explain\s+(?:analy[sz]e\s+|\([^)]*\)\s*)?", re.I)


def duckdb_error_line(exc: duckdb.Error) -> str:
    """DuckDB's message on one line, without the `LINE 1: ... ^` pointer it draws under the SQL."""
    lines = str(exc).splitlines()
    cut = next((i for i, line in enumerate(lines) if line.startswith("LINE ")), len(lines))
    return one_line("\n".join(lines[:cut]))


def _table_functions(node) -> list[tuple[str, str]]:
    """(schema or catalog, name) of every table function in a serialized statement."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == "TABLE_FUNCTION" and isinstance(node.get("function"), dict):
            function = node["function"]
            found.append((function.get("schema") or function.get("catalog") or "", function.get("function_name", "")))
        for value in node.values():
            found.extend(_table_functions(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_table_functions(value))
    return found


def _table_function_allowed(scope: str, name: str) -> bool:
    name = name.lower()
    if scope and scope.lower() not in ("main", "system", "pg_catalog"):
        return name in READ_LAKE_FUNCTIONS  # lake.snapshots() and the like
    if name.startswith("ducklake_"):
        return name.removeprefix("ducklake_") in READ_LAKE_FUNCTIONS
    return name in READ_TABLE_FUNCTIONS or name.startswith(READ_TABLE_PREFIXES)


def _check_select(con: duckdb.DuckDBPyConnection, text: str) -> str | None:
    serialized = json.loads(con.execute("SELECT json_serialize_sql(?)", [text]).fetchone()[0])
    if serialized.get("error"):
        return f"it cannot be checked ({serialized.get('error_message', 'not a plain SELECT')})"
    for scope, name in _table_functions(serialized["statements"]):
        if not _table_function_allowed(scope, name):
            shown = f"{scope}.{name}" if scope else name
            return f"the table function {shown}() is refused (it may write, or run SQL given as text)"
    return None


def _refusal(con: duckdb.DuckDBPyConnection, statement) -> str | None:
    """Why `statement` is refused, or None when it only reads."""
    kind = statement.type
    if kind == duckdb.StatementType.SELECT:
        return _check_select(con, statement.query)
    if kind == duckdb.StatementType.EXPLAIN:
        prefix = _EXPLAIN.match(statement.query)
        inner = con.extract_statements(statement.query[prefix.end():]) if prefix else []
        if len(inner) != 1:
            return "EXPLAIN of this statement cannot be checked"
        return _refusal(con, inner[0])
    if kind == duckdb.StatementType.CALL:
        return "CALL is refused (a function that reads works as SELECT * FROM f(...))"
    keyword = (statement.query.split() or ["this"])[0].upper()
    return f"{keyword} is refused"


def read_only_statements(con: duckdb.DuckDBPyConnection, sql: str) -> list:
    """The statements of `sql` when every one of them only reads; otherwise a UserError that says
    which statement is refused and why (nothing has run)."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise UserError(f"query failed: {duckdb_error_line(exc)}") from exc
    if not statements:
        raise UserError("query is empty")
    for number, statement in enumerate(statements, start=1):
        reason = _refusal(con, statement)
        if reason:
            where = (f" (statement {number} of {len(statements)}: {one_line(statement.query)[:60]!r})"
                     if len(statements) > 1 else "")
            raise UserError(f"curate query runs only statements that read: {reason}{where}; nothing ran")
    return statements


MAX_SQL_BYTES = 100_000  # a query's text; a 10 MB query of a million columns ran 300 s at 1.7 GB


def check_size(sql: str) -> None:
    size = len(sql.encode("utf-8", "surrogatepass"))
    if size > MAX_SQL_BYTES:
        raise UserError(f"query is {size:,} bytes; curate query takes at most {MAX_SQL_BYTES:,}")


def confine(con: duckdb.DuckDBPyConnection, folders: list[str]) -> None:
    """Only `folders` (the lake's own) can be read: read_text('/etc/passwd'), glob('/**') or
    read_csv of another file fail (DuckDB's allowed_directories with external access off)."""
    listed = ", ".join("'" + folder.replace("'", "''") + "'" for folder in folders)
    con.execute(f"SET allowed_directories = [{listed}]")
    con.execute("SET enable_external_access = false")


def run_statements(con: duckdb.DuckDBPyConnection, statements: list, timeout_s: float,
                   max_rows: int = 0) -> tuple[pa.Table, bool]:
    """Run the statements in order and return the last one's result as an Arrow table, and
    whether it was cut at `max_rows` (0: never cut; the rest is never fetched). A query still
    running after `timeout_s`, or when Ctrl-C arrives, is interrupted within a second."""
    outcome: dict = {}

    def work() -> None:
        try:
            result = None
            for statement in statements:
                result = con.execute(statement)
            if not max_rows:
                outcome["table"], outcome["cut"] = result.to_arrow_table(), False
                return
            reader, batches, rows = result.fetch_record_batch(min(max_rows + 1, 65_536)), [], 0
            for batch in reader:
                batches.append(batch)
                rows += batch.num_rows
                if rows > max_rows:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
            outcome["table"], outcome["cut"] = table.slice(0, max_rows), rows > max_rows
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="curate-query", daemon=True)
    deadline = time.monotonic() + timeout_s
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
            if worker.is_alive() and time.monotonic() > deadline:
                con.interrupt()
                worker.join(5)
                raise UserError(f"query stopped after its timeout of {timeout_s:g} s (--timeout)")
    except KeyboardInterrupt:
        con.interrupt()
        worker.join(5)
        raise
    if "error" in outcome:
        if isinstance(outcome["error"], duckdb.Error):
            hint = (" (curate query reads only the lake's own files; --read-files lets it read others)"
                    if isinstance(outcome["error"], duckdb.PermissionException) else "")
            raise UserError(f"query failed: {duckdb_error_line(outcome['error'])}{hint}") from outcome["error"]
        raise outcome["error"]
    return outcome["table"], outcome["cut"]


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Defence in depth for a query connection: no extension is installed or loaded on demand,
    and no setting changes after this."""
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")
