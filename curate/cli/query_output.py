"""How `curate query` prints a result: a table for people, CSV / JSON / JSON lines for scripts.

Every format prints values verbatim (no markup, `[...]` stays). Nested values (lists, structs,
maps) are JSON in a table cell or a CSV field and native JSON in json/jsonl. CSV follows RFC 4180
with one convention for NULL: an empty unquoted field is NULL and `""` is the empty string (DuckDB
reads it back so with `read_csv(..., allow_quoted_nulls = false)`); numbers are unquoted, every
other value is quoted. Times are ISO 8601, bytes are base64.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import sys
import uuid
from typing import TextIO

import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "csv", "json", "jsonl")


def plain(value):
    """`value` as JSON-ready Python: times as ISO strings, bytes as base64, decimals as numbers."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _json(value) -> str:
    return json.dumps(plain(value), ensure_ascii=False)


def cell_text(value) -> str:
    """A value as the text of one table cell or CSV field."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return _json(value)
    value = plain(value)
    return value if isinstance(value, str) else str(value)


def _csv_field(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return repr(value)
    return '"' + cell_text(value).replace('"', '""') + '"'


def write_csv(frame: pl.DataFrame, out: TextIO) -> None:
    out.write(",".join(_csv_field(name) for name in frame.columns) + "\n")
    for row in frame.iter_rows():
        out.write(",".join(_csv_field(value) for value in row) + "\n")


def write_jsonl(frame: pl.DataFrame, out: TextIO) -> None:
    for row in frame.iter_rows():
        out.write(_json(dict(zip(frame.columns, row))) + "\n")


def write_json(frame: pl.DataFrame, out: TextIO) -> None:
    rows = [plain(dict(zip(frame.columns, row))) for row in frame.iter_rows()]
    out.write(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")


def result_table(frame: pl.DataFrame) -> Table:
    """A rich table whose cells are `Text`, so no markup or emoji code in a value is interpreted."""
    table = Table(show_lines=False)
    for column in frame.columns:
        table.add_column(Text(column))
    for row in frame.iter_rows():
        table.add_row(*[Text(cell_text(value)) for value in row])
    return table


def print_frame(frame: pl.DataFrame, format: str = "table", console: Console | None = None,
                out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if format == "table":
        (console or Console(highlight=False, markup=False, emoji=False)).print(result_table(frame))
    elif format == "csv":
        write_csv(frame, out)
    elif format == "json":
        write_json(frame, out)
    elif format == "jsonl":
        write_jsonl(frame, out)
    else:
        raise ValueError(f"unknown format {format!r} (known: {', '.join(FORMATS)})")
