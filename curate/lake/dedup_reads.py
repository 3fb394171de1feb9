"""The reads cross-run dedup makes of the lake (curate.dedup.lake_index decides what to do with
them): the `pair_dedup_index` table's counts and keys, the kept pairs' texts, and the kept pairs
that can collide with a batch of new ones."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import polars as pl
import pyarrow as pa

TABLE = "pair_dedup_index"
CHUNK_IDS = 50_000  # ids per query of the chunked reads: the connection stays free between chunks


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def indexed_pairs(lake, minhash_params: str) -> int:
    """Kept pairs whose band keys were made with these MinHash settings."""
    return lake.con.execute(f"SELECT count(*) FROM {TABLE} WHERE minhash_params = ?", [minhash_params]).fetchone()[0]


def indexed_vectors(lake, model: str) -> int:
    """Kept pairs whose vector of `model` is in the semantic index."""
    return lake.con.execute(f"SELECT count(*) FROM {TABLE} WHERE vector_model = ?", [model]).fetchone()[0]


def unindexed_pair_ids(lake, minhash_params: str) -> pl.DataFrame:
    """pair_id of the kept pairs with no index row for these settings, in pair_id order."""
    return lake.query(f"SELECT pair_id FROM pairs ANTI JOIN (SELECT pair_id FROM {TABLE} "
                      "WHERE minhash_params = ?) USING (pair_id) ORDER BY pair_id", [minhash_params])


def vector_keys(lake, model: str) -> pl.Series:
    return lake.query(f"SELECT vector_key FROM {TABLE} WHERE vector_model = ?", [model])["vector_key"]


def _chunks(lake, ids: pl.DataFrame, column: str, query: str, alias: str = "") -> Iterator[pl.DataFrame]:
    for start in range(0, ids.height, CHUNK_IDS):
        with lake.registered("_chunk_ids", ids.slice(start, CHUNK_IDS).to_arrow()):
            where = " AND " if " WHERE " in query else " WHERE "
            frame = lake.query(f"{query}{where}{alias}{column} IN (SELECT {column} FROM _chunk_ids)")
        yield frame


def pair_texts(lake, pair_ids: pl.DataFrame) -> Iterator[pl.DataFrame]:
    """pair_id, prompt, chosen, rejected of the pairs in `pair_ids` (a pair_id column), CHUNK_IDS
    at a time."""
    yield from _chunks(lake, pair_ids, "pair_id", "SELECT pair_id, prompt, chosen, rejected FROM pairs")


def pair_texts_of_vectors(lake, keys: pl.DataFrame, model: str) -> Iterator[pl.DataFrame]:
    """pair_id, prompt, chosen, rejected and vector_key of the kept pairs whose vector of `model`
    has one of `keys` (a vector_key column), CHUNK_IDS at a time."""
    query = (f"SELECT p.pair_id, p.prompt, p.chosen, p.rejected, i.vector_key FROM {TABLE} i "
             f"JOIN pairs p USING (pair_id) WHERE i.vector_model = {_literal(model)}")
    yield from _chunks(lake, keys, "vector_key", query, alias="i.")


def colliding_pair_ids(lake, dedup_keys: pa.Table | None, band_keys: pa.Table | None,
                       vector_keys_near: pa.Table | None, minhash_params: str) -> list[str]:
    """Kept pairs that share a dedup_key (`dedup_keys`: a dedup_key column), an LSH band key made
    with these settings (`band_keys`: a band_key column) or a vector key (`vector_keys_near`: a
    vector_key column) with a new batch; a None table is a probe not made."""
    probes, tables = [], {}
    if dedup_keys is not None:
        probes.append("SELECT pair_id FROM pairs WHERE dedup_key IN (SELECT dedup_key FROM _fresh_keys)")
        tables["_fresh_keys"] = dedup_keys
    if band_keys is not None:
        probes.append(f"SELECT DISTINCT pair_id FROM (SELECT pair_id, unnest(band_keys) AS band_key FROM {TABLE} "
                      f"WHERE minhash_params = {_literal(minhash_params)}) JOIN _fresh_bands USING (band_key)")
        tables["_fresh_bands"] = band_keys
    if vector_keys_near is not None:
        probes.append(f"SELECT pair_id FROM {TABLE} JOIN _fresh_near USING (vector_key)")
        tables["_fresh_near"] = vector_keys_near
    if not probes:
        return []
    with contextlib.ExitStack() as stack:
        for name, table in tables.items():
            stack.enter_context(lake.registered(name, table))
        return lake.query(" UNION ".join(probes))["pair_id"].to_list()
