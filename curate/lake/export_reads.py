"""The reads of the lake that exports and reports make (curate.publish): pairs with their audit
verdicts in batches, the scores and models of exported pairs' sides, a table's rows at a snapshot."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import polars as pl
import pyarrow as pa


def _verdict_columns(lake) -> set[str]:
    try:
        return {c[0] for c in lake.con.execute("SELECT * FROM pair_audit_verdicts LIMIT 0").description}
    except duckdb.Error:  # a lake from before the audit
        return set()


def pairs_with_verdicts(lake, strategies: list[str] | None = None, min_margin: float | None = None,
                        runs: list[str] | None = None, batch_rows: int = 20_000) -> Iterator[pa.RecordBatch]:
    """Every pair (of `strategies`, with a margin of at least `min_margin`, of `runs`, where given)
    with its `audit_verdict` and `answer_verdict` (null: not audited), in pair_id order, as Arrow
    record batches of `batch_rows`. The filters run in DuckDB: an export of one run reads only that
    run's files."""
    where, params = [], []
    if strategies is not None:
        where.append("list_contains(?, p.strategy)")
        params.append(strategies)
    if min_margin is not None:
        where.append("p.margin IS NOT NULL AND p.margin >= ?")
        params.append(min_margin)
    if runs is not None:
        where.append("list_contains(?, p.run_id)")
        params.append(runs)
    have = _verdict_columns(lake)
    verdict = "v.verdict" if "verdict" in have else "NULL::VARCHAR"
    # a lake no writer opened since answer verdicts came has none: its pairs have no answer-level evidence
    answer = "v.answer_verdict" if "answer_verdict" in have else "NULL::VARCHAR"
    join = " LEFT JOIN pair_audit_verdicts v USING (pair_id)" if have else ""
    sql = (f"SELECT p.*, {verdict} AS audit_verdict, {answer} AS answer_verdict FROM pairs p{join}"
           + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY p.pair_id")
    yield from lake.con.execute(sql, params).to_arrow_reader(batch_rows)


def scores_and_models_of(lake, candidate_ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(every score row of these candidates, their candidate_id and model)."""
    with lake.registered("_export_sides", pa.table({"candidate_id": candidate_ids.to_arrow()})):
        scores = lake.query("SELECT s.* FROM scores s SEMI JOIN _export_sides USING (candidate_id)")
        models = lake.query("SELECT c.candidate_id, c.model FROM candidates c SEMI JOIN _export_sides USING (candidate_id)")
    return scores, models


def columns_at(lake, table: str, snapshot: int | None = None) -> list[str]:
    """The table's columns (at `snapshot`); DuckDB's error when it has no such table there."""
    at, params = (" AT (VERSION => ?)", [snapshot]) if snapshot is not None else ("", None)
    return lake.query(f"SELECT * FROM {table}{at} LIMIT 0", params).columns


def rows_at(lake, table: str, columns: list[str], snapshot: int | None = None) -> pl.DataFrame:
    """The table's rows (at `snapshot`), only `columns`."""
    at, params = (" AT (VERSION => ?)", [snapshot]) if snapshot is not None else ("", None)
    listed = ", ".join(f'"{c}"' for c in columns)
    return lake.query(f"SELECT {listed} FROM {table}{at}", params)
