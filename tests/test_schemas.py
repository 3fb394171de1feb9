"""Table declarations (schemas/*.toml) -> Arrow schemas, DuckDB DDL, conform() and the reference."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from curate.lake import schemas

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
CHAT = "list<struct<role:string,content:string>>"


def _run_row(**overrides) -> dict:
    row = {"run_id": "r1", "started_at": NOW, "finished_at": None, "status": "running",
           "config_json": "{}", "code_version": "curate test", "counts_json": None}
    row.update(overrides)
    return row


@pytest.mark.parametrize("name", schemas.TABLES)
def test_every_table_loads_with_key_among_columns(name):
    table = schemas.table(name)
    assert table.name == name
    assert table.fields, f"{name} declares no fields"
    assert table.key in table.column_names
    # the key identifies a row, so it must never be null
    key_field = next(f for f in table.fields if f.name == table.key)
    assert key_field.nullable is False
    assert len(set(table.column_names)) == len(table.column_names), "duplicate column names"


@pytest.mark.parametrize("name", schemas.TABLES)
def test_arrow_schema_names_match_column_names(name):
    table = schemas.table(name)
    arrow = table.arrow_schema()
    assert arrow.names == table.column_names
    for field in table.fields:
        assert arrow.field(field.name).nullable == field.nullable


@pytest.mark.parametrize("name", schemas.TABLES)
def test_create_sql_contains_each_column(name):
    table = schemas.table(name)
    sql = table.create_sql(f"lake.{name}")
    assert sql.startswith(f"CREATE TABLE IF NOT EXISTS lake.{name} (")
    for column in table.column_names:
        assert f'"{column}" ' in sql


def test_scalar_types_map_to_arrow_and_duckdb():
    assert schemas._parse("string") == (pa.string(), "VARCHAR")
    assert schemas._parse("int32") == (pa.int32(), "INTEGER")
    assert schemas._parse("int64") == (pa.int64(), "BIGINT")
    assert schemas._parse("float64") == (pa.float64(), "DOUBLE")
    assert schemas._parse("bool") == (pa.bool_(), "BOOLEAN")
    assert schemas._parse("timestamp") == (pa.timestamp("us", tz="UTC"), "TIMESTAMPTZ")


def test_chat_list_type_maps_to_list_of_struct():
    arrow, sql = schemas._parse(CHAT)
    assert pa.types.is_list(arrow)
    assert pa.types.is_struct(arrow.value_type)
    assert [f.name for f in arrow.value_type] == ["role", "content"]
    assert all(f.type == pa.string() for f in arrow.value_type)
    assert sql == 'STRUCT("role" VARCHAR, "content" VARCHAR)[]'


def test_chat_columns_in_declared_tables_use_nested_type():
    prompts = schemas.table("prompts")
    messages = prompts.arrow_schema().field("messages").type
    assert messages == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    assert '"messages" STRUCT("role" VARCHAR, "content" VARCHAR)[]' in prompts.create_sql("x")
    pairs = schemas.table("pairs")
    assert '"prompt" STRUCT("role" VARCHAR, "content" VARCHAR)[]' in pairs.create_sql("x")


def test_nested_struct_with_list_member_splits_at_top_level_only():
    arrow, sql = schemas._parse("struct<a:int32,b:list<string>,c:struct<d:bool,e:float64>>")
    assert arrow == pa.struct([("a", pa.int32()), ("b", pa.list_(pa.string())),
                               ("c", pa.struct([("d", pa.bool_()), ("e", pa.float64())]))])
    assert sql == 'STRUCT("a" INTEGER, "b" VARCHAR[], "c" STRUCT("d" BOOLEAN, "e" DOUBLE))'


@pytest.mark.parametrize("bad", ["text", "list<nope>", "struct<a:varchar>", "list<string"])
def test_unknown_type_raises_value_error(bad):
    with pytest.raises(ValueError, match="unknown field type"):
        schemas._parse(bad)


def test_conform_list_of_dicts_casts_to_schema():
    table = schemas.conform("runs", [_run_row()])
    assert table.schema == schemas.table("runs").arrow_schema()
    assert table.num_rows == 1
    assert table.column("run_id").to_pylist() == ["r1"]


def test_conform_empty_list_gives_empty_table_with_schema():
    table = schemas.conform("pairs", [])
    assert table.num_rows == 0
    assert table.schema.names == schemas.table("pairs").column_names


def test_conform_nested_messages_round_trip():
    row = {"prompt_id": "p", "source": "s", "task": "chat",
           "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
           "run_id": "r", "created_at": NOW}
    table = schemas.conform("prompts", [row])
    assert table.column("messages").to_pylist() == [row["messages"]]
    assert table.column("reference_answer").to_pylist() == [None]


def test_conform_raises_on_null_in_required_column_from_dicts():
    with pytest.raises(ValueError, match=r"runs\.status is required but has nulls"):
        schemas.conform("runs", [_run_row(status=None)])


def test_conform_raises_when_required_key_absent_from_dicts():
    row = _run_row()
    del row["config_json"]
    with pytest.raises(ValueError, match="config_json"):
        schemas.conform("runs", [row])


def test_conform_allows_null_in_nullable_column():
    table = schemas.conform("runs", [_run_row(finished_at=None, counts_json=None)])
    assert table.column("finished_at").null_count == 1


def test_conform_arrow_table_missing_column_raises():
    good = schemas.conform("runs", [_run_row()])
    partial = good.drop_columns(["code_version"])
    with pytest.raises(ValueError, match=r"runs: missing columns \['code_version'\]"):
        schemas.conform("runs", partial)


def test_conform_arrow_table_with_null_in_required_column_raises():
    good = schemas.conform("runs", [_run_row()])
    loose = pa.table({name: good.column(name) for name in good.column_names})  # all nullable
    idx = loose.column_names.index("status")
    loose = loose.set_column(idx, "status", pa.array([None], pa.string()))
    with pytest.raises(ValueError):
        schemas.conform("runs", loose)


def test_conform_arrow_table_reorders_drops_extra_and_casts():
    good = schemas.conform("runs", [_run_row()])
    shuffled = pa.table({
        "extra": [1],
        **{name: good.column(name) for name in reversed(good.column_names)},
    })
    # a large_string column must be cast back to the declared string type
    shuffled = shuffled.set_column(shuffled.column_names.index("status"), "status",
                                   pa.array(["running"], pa.large_string()))
    result = schemas.conform("runs", shuffled)
    assert result.column_names == schemas.table("runs").column_names
    assert result.schema.field("status").type == pa.string()
    assert "extra" not in result.column_names


def test_markdown_reference_mentions_every_table_and_column():
    text = schemas.markdown_reference()
    for name in schemas.TABLES:
        assert f"### `{name}`" in text
        for column in schemas.table(name).column_names:
            assert f"| `{column}` |" in text
    assert f"| `messages` | `{CHAT}` | no |" in text
