"""What every strategy shares: picking usable scores, and turning chosen/rejected picks into
pair rows with ids, dedup keys and parameters (schemas/pairs.toml)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl

from curate import bulk_ids
from curate.lake import schemas
from curate.score import newest_scores

# Columns a strategy provides; finish_pairs adds the rest.
PICK_COLUMNS = ("prompt_id", "prompt", "chosen", "rejected", "chosen_id", "rejected_id", "scorer",
                "chosen_score", "rejected_score", "margin", "reason")
OPTIONAL_PICK_COLUMNS = {"weight": pl.Float64, "details_json": pl.Utf8}
MESSAGES = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
# Column types of a picks frame built row by row (strategies whose logic is per prompt).
PICK_SCHEMA = {
    "prompt_id": pl.Utf8, "prompt": MESSAGES, "chosen": pl.Utf8, "rejected": pl.Utf8,
    "chosen_id": pl.Utf8, "rejected_id": pl.Utf8, "scorer": pl.Utf8, "chosen_score": pl.Float64,
    "rejected_score": pl.Float64, "margin": pl.Float64, "reason": pl.Utf8, "details_json": pl.Utf8,
}


def newest(rows: pl.DataFrame) -> pl.DataFrame:
    """The newest of `rows` (one scorer's) per candidate: latest created_at, then largest score_id.
    Rows already one per candidate are returned as they are."""
    if rows["candidate_id"].n_unique() == rows.height:
        return rows
    return newest_scores(rows)


def row_for_row(ids: pl.Series, rows: pl.DataFrame, columns: list[str]) -> pl.DataFrame | None:
    """`rows`' columns for each of `ids`, row for row (nulls where an id has no row): a left join on
    candidate_id, made on 64-bit hashes of the ids (faster than on the strings) and every match
    checked against the ids themselves. None where `ids` or `rows` hold an id (or a hash) twice."""
    right = rows.select(pl.col("candidate_id").hash().alias("_h"), "candidate_id", *columns)
    try:
        found = pl.DataFrame({"_h": ids.hash()}).join(right, on="_h", how="left", maintain_order="left",
                                                      validate="1:1")
        if (found["candidate_id"] == ids).fill_null(True).all():
            return found.select(columns)
        found = pl.DataFrame({"candidate_id": ids}).join(  # two ids share a hash: the strings themselves
            rows.select("candidate_id", *columns), on="candidate_id", how="left", maintain_order="left",
            validate="1:1")
        return found.select(columns)
    except pl.exceptions.ComputeError:
        return None


def ok_scores(scores: pl.DataFrame, scorer: str, version: str | None = None) -> pl.DataFrame:
    """candidate_id, score: the newest row of `scorer` (of `version`, when given) per candidate,
    where it is ok and has a score."""
    rows = scores.filter(pl.col("scorer") == scorer)
    if version is not None:
        rows = rows.filter(pl.col("scorer_version") == version)
    return newest(rows).filter((pl.col("status") == "ok") & pl.col("score").is_not_null()).select(
        "candidate_id", "score")


def usable_scores(scores: pl.DataFrame, candidates: pl.DataFrame, scorer: str,
                  version: str | None = None) -> pl.DataFrame:
    """One ok score per candidate with text: candidate_id, prompt_id, text, score.

    With several versions of the scorer stored and none named, the newest row counts, so a
    candidate can never stand for two different scores (and be paired with itself).
    """
    return ok_scores(scores, scorer, version).join(
        candidates.filter(pl.col("text").is_not_null()).select("candidate_id", "prompt_id", "text"),
        on="candidate_id")


def empty_pairs() -> pl.DataFrame:
    return pl.from_arrow(schemas.table("pairs").arrow_schema().empty_table())


KEY_PARTS = ("prompt_key", "chosen_key", "rejected_key")  # dedup-key parts a strategy may hand over
ID_PARTS = ("chosen_id_json", "rejected_id_json", "prompt_id_json")  # and pair-id parts


def content_keys(picked: pl.DataFrame, strategy: str) -> tuple[pl.Series, pl.Series]:
    """pair_id and dedup_key per pick, hashed over whole columns (curate.bulk_ids): equal to the
    per-row ids.pair_id and pair_dedup_key, so ids stay stable across versions. Where the picks
    hold the parts a strategy computed once per candidate and prompt, they are used: KEY_PARTS
    (bulk_ids.prompt_keys and text_keys of prompt, chosen and rejected), ID_PARTS
    (bulk_ids.json_string of chosen_id, rejected_id and prompt_id)."""
    if set(ID_PARTS) <= set(picked.columns):
        ids = [picked[c] for c in ID_PARTS]
    else:
        ids = [bulk_ids.json_string(picked[c]) for c in ("chosen_id", "rejected_id", "prompt_id")]
    if set(KEY_PARTS) <= set(picked.columns):
        keys = [picked[c] for c in KEY_PARTS]
    else:
        keys = [bulk_ids.prompt_keys(picked["prompt"]), bulk_ids.text_keys(picked["chosen"]),
                bulk_ids.text_keys(picked["rejected"])]
    return bulk_ids.pair_ids_and_dedup_keys(strategy, ids, keys)


def finish_pairs(picked: pl.DataFrame, strategy: str, params: dict, run_id: str) -> pl.DataFrame:
    """Pair rows from picks (PICK_COLUMNS, optionally weight, details_json, KEY_PARTS and ID_PARTS)."""
    if picked.is_empty():
        return empty_pairs()
    for column, dtype in OPTIONAL_PICK_COLUMNS.items():
        if column not in picked.columns:
            picked = picked.with_columns(pl.lit(None, dtype=dtype).alias(column))
    keyed = picked.with_columns(
        *content_keys(picked, strategy),
        pl.lit(strategy).alias("strategy"),
        pl.lit(json.dumps(params, sort_keys=True, default=str)).alias("params_json"),
        pl.lit(run_id).alias("run_id"),
        pl.lit(datetime.now(timezone.utc)).alias("created_at"),
    )
    if keyed["prompt_id"].is_sorted():  # (as all pairs come) numbers order the prompts faster
        return _conformed(keyed.sort(pl.col("prompt_id").rle_id(), "pair_id"))
    return _conformed(keyed.sort("prompt_id", "pair_id"))


def _conformed(pairs: pl.DataFrame) -> pl.DataFrame:
    """`pairs` as schemas.conform makes them; a frame with the table's types already and no null
    where the table forbids one is only narrowed to the table's columns (no trip through Arrow)."""
    schema = schemas.table("pairs").arrow_schema()
    frame = pairs.select(schema.names)
    if frame.schema == empty_pairs().schema and not any(
            frame[field.name].null_count() for field in schema if not field.nullable):
        return frame
    return pl.from_arrow(schemas.conform("pairs", pairs.to_arrow()))


def side_models(pairs: pl.DataFrame, candidates: pl.DataFrame) -> pl.DataFrame:
    """pair_id, chosen_model, rejected_model: who wrote each side of each pair.

    A side that is a candidate row has that row's model. The other ids strategies use say what
    they are: "reference" (a prompt's reference solution), "commit:<sha>:after|before" (a mined
    commit's file: "git commit"), "code_edit:<prompt>:after|before" (a supplied edit: "code edit"),
    "<solution id>#step<k>" (a step of a step-wise solution: that solution's model)."""
    models = candidates.select("candidate_id", "model").unique("candidate_id")

    def side(column: str) -> pl.DataFrame:
        ids = pairs.select("pair_id", pl.col(column).alias("side_id"),
                           pl.col(column).str.replace(r"#step\d+$", "").alias("candidate_id"))
        named = (pl.when(pl.col("side_id") == "reference").then(pl.lit("reference"))
                 .when(pl.col("side_id").str.starts_with("commit:")).then(pl.lit("git commit"))
                 .when(pl.col("side_id").str.starts_with("code_edit:")).then(pl.lit("code edit"))
                 .otherwise(pl.col("model")))
        return ids.join(models, on="candidate_id", how="left").select(
            "pair_id", named.alias(column.replace("_id", "_model")))

    return side("chosen_id").join(side("rejected_id"), on="pair_id", how="left")
