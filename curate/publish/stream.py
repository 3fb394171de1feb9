"""Export straight from the lake in Arrow record batches: memory follows the batch, not the lake.

`export_lake(lake, out_dir, options)` writes what `export_pairs(with_verdicts(lake.read("pairs"),
read_audits(lake)), out_dir, options)` writes, through the same `write_batches` (filters, split,
styles, formats and card), reading the pairs in `pair_id` order `batch_rows` at a time. The filters run in DuckDB (so an
export of one run, `ExportOptions(runs=[run_id])`, reads only that run's files) and again on each
batch with `select_pairs` itself, so their meaning is the one place's. The card is drawn from the
exported pairs' lineage columns and text lengths, and from the scores and models of their
candidates only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pyarrow as pa

from curate.lake import export_reads
from curate.publish.export import ExportOptions, write_batches


def export_lake(lake, out_dir: Path | str, options: ExportOptions | None = None, card_context=None,
                batch_rows: int = 20_000) -> dict:
    """Filter, split and write the lake's pairs batch by batch; returns what `export_pairs` returns.
    `card_context` (a curate.publish.card.CardContext) writes the card; its scores and candidates may be
    None: they are then read from the lake for the exported pairs' candidates only. The export is
    written aside and swapped in whole (curate.publish.swap)."""
    options = options or ExportOptions()
    batches = (pl.from_arrow(pa.Table.from_batches([batch])) for batch in export_reads.pairs_with_verdicts(
        lake, options.strategies, options.min_margin, options.runs, batch_rows))
    empty = lake.no_rows("pairs").with_columns(pl.lit(None, pl.String).alias("audit_verdict"),
                                                pl.lit(None, pl.String).alias("answer_verdict"))
    return write_batches(batches, empty, out_dir, options,
                         lambda kept: None if card_context is None else _card_context(lake, card_context, kept))


def _card_context(lake, given, kept: pl.DataFrame):
    """The card's context, with the scores and candidates of the exported pairs' sides read from
    the lake where the caller left them out."""
    if given.scores is not None and given.candidates is not None:
        return given
    scores, candidates = export_reads.scores_and_models_of(
        lake, pl.concat([kept["chosen_id"], kept["rejected_id"]]).unique())
    scores = given.scores if given.scores is not None else scores
    candidates = given.candidates if given.candidates is not None else candidates
    runs = given.runs if given.runs is not None else lake.read("runs")
    return replace(given, scores=scores, candidates=candidates, runs=runs)
