"""Table declarations from `schemas/*.toml`, turned into Arrow schemas and DuckDB DDL.

A field type is one of the scalar names below, `list<T>` or `struct<name:T,...>`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
TABLES = ("runs", "prompts", "candidates", "scores", "pairs", "rejects", "dedup_drops", "embeddings",
          "pair_audits", "pair_dedup_index", "pair_facts", "pair_stats_parts", "pair_audit_facts")
# Bookkeeping derived from the other tables (dedup's index, what the views read): no report reads it whole.
INDEX_TABLES = ("pair_dedup_index", "pair_facts", "pair_stats_parts", "pair_audit_facts")
DATA_TABLES = tuple(t for t in TABLES if t not in INDEX_TABLES)

_SCALARS = {
    "string": (pa.string(), "VARCHAR"),
    "int32": (pa.int32(), "INTEGER"),
    "int64": (pa.int64(), "BIGINT"),
    "float32": (pa.float32(), "FLOAT"),
    "float64": (pa.float64(), "DOUBLE"),
    "bool": (pa.bool_(), "BOOLEAN"),
    "timestamp": (pa.timestamp("us", tz="UTC"), "TIMESTAMPTZ"),
}


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    nullable: bool
    description: str


@dataclass(frozen=True)
class Table:
    name: str
    key: str
    description: str
    fields: tuple[Field, ...]

    @property
    def column_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(f.name, _parse(f.type)[0], nullable=f.nullable) for f in self.fields]
        )

    def create_sql(self, qualified_name: str) -> str:
        # DuckLake has no NOT NULL on nested types and no primary keys; nullability is
        # enforced by the Arrow schema when rows are built (see conform()).
        columns = ", ".join(f'"{f.name}" {_parse(f.type)[1]}' for f in self.fields)
        return f"CREATE TABLE IF NOT EXISTS {qualified_name} ({columns})"


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += char == "<"
        depth -= char == ">"
        current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _parse(type_text: str) -> tuple[pa.DataType, str]:
    """Return (arrow type, DuckDB type) for a declared field type."""
    text = type_text.strip()
    if text in _SCALARS:
        return _SCALARS[text]
    if text.startswith("list<") and text.endswith(">"):
        arrow, sql = _parse(text[5:-1])
        return pa.list_(arrow), f"{sql}[]"
    if text.startswith("struct<") and text.endswith(">"):
        members = []
        for member in _split_top_level(text[7:-1]):
            name, _, member_type = member.partition(":")
            members.append((name.strip(), *_parse(member_type)))
        arrow = pa.struct([pa.field(n, a) for n, a, _ in members])
        sql = "STRUCT(" + ", ".join(f'"{n}" {s}' for n, _, s in members) + ")"
        return arrow, sql
    raise ValueError(f"unknown field type {type_text!r} in schemas/")


@cache
def table(name: str) -> Table:
    path = SCHEMA_DIR / f"{name}.toml"
    spec = tomllib.loads(path.read_text())
    fields = tuple(
        Field(f["name"], f["type"], bool(f.get("nullable", True)), f.get("description", ""))
        for f in spec["fields"]
    )
    for f in fields:
        _parse(f.type)
    return Table(spec["name"], spec["key"], spec.get("description", ""), fields)


def conform(name: str, rows: pa.Table | list[dict]) -> pa.Table:
    """Cast rows to the table's Arrow schema; raises if a required column is missing or null."""
    schema = table(name).arrow_schema()
    if isinstance(rows, list):
        result = pa.Table.from_pylist(rows, schema=schema)
    else:
        missing = [c for c in schema.names if c not in rows.column_names]
        if missing:
            raise ValueError(f"{name}: missing columns {missing}")
        result = rows.select(schema.names).cast(schema)
    for field in schema:
        if not field.nullable and result.column(field.name).null_count:
            raise ValueError(f"{name}.{field.name} is required but has nulls")
    return result


def markdown_reference() -> str:
    """The README's table reference, generated from the declarations."""
    out = []
    for name in TABLES:
        t = table(name)
        out.append(f"### `{t.name}`\n\n{t.description}\n\n| column | type | null | meaning |\n|---|---|---|---|")
        for f in t.fields:
            out.append(f"| `{f.name}` | `{f.type}` | {'yes' if f.nullable else 'no'} | {f.description} |")
        out.append("")
    return "\n".join(out)
