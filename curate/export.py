"""Export: kept pairs as a Hugging Face dataset in TRL's conversational preference format.

`prompt` is the chat list, `chosen`/`rejected` are one-message assistant lists, so TRL's
DPOTrainer applies the model's own chat template (no doubled BOS/EOS from pre-rendered
text). Lineage columns ride along: every row says which strategy, scorer and run made it.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

LINEAGE_COLUMNS = ["pair_id", "prompt_id", "strategy", "params_json", "scorer", "chosen_score",
                   "rejected_score", "margin", "reason", "chosen_id", "rejected_id", "run_id"]


def to_trl_conversational(pairs: pl.DataFrame) -> pl.DataFrame:
    def as_assistant(column: str) -> pl.Expr:
        return pl.concat_list(
            pl.struct(pl.lit("assistant").alias("role"), pl.col(column).alias("content"))
        ).alias(column)

    return pairs.sort("pair_id").select(
        pl.col("prompt"), as_assistant("chosen"), as_assistant("rejected"), *LINEAGE_COLUMNS
    )


def export_dataset(pairs: pl.DataFrame, out_dir: Path):
    """Write the pairs with `save_to_disk`; returns the datasets.Dataset."""
    import datasets

    table = to_trl_conversational(pairs).to_arrow()
    if table.num_rows == 0:  # datasets needs one (empty) chunk per column, polars gives none
        table = pa.Table.from_pylist([], schema=table.schema)
    dataset = datasets.Dataset(table)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # An empty dataset saved with the default sharding cannot be loaded back; one shard can.
    dataset.save_to_disk(str(out_dir), num_shards=1 if len(dataset) == 0 else None)
    return dataset
