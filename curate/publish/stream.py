"""Export straight from the lake in Arrow record batches: memory follows the batch, not the lake.

`export_lake(lake, out_dir, options)` writes what `export_pairs(with_verdicts(lake.read("pairs"),
read_audits(lake)), out_dir, options)` writes (the same filters, split, styles, formats and card),
reading the pairs in `pair_id` order `batch_rows` at a time. The filters run in DuckDB (so an
export of one run, `ExportOptions(runs=[run_id])`, reads only that run's files) and again on each
batch with `select_pairs` itself, so their meaning is the one place's. The card is drawn from the
exported pairs' lineage columns and text lengths, and from the scores and models of their
candidates only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.audit.checks import audit_summary
from curate.lake import export_reads
from curate.publish.card import write_dataset_card
from curate.publish.export import (
    _EXPORT_FILES,
    SPLITS,
    ExportOptions,
    _hub_data_path,
    leave_out,
    select_pairs,
    style_schema,
    to_style,
)
from curate.publish.swap import relocated, staged

TEXT_COLUMNS = ("prompt", "chosen", "rejected")
# what the card reads of each exported pair besides the texts' lengths (kept for every pair)
CARD_COLUMNS = ("pair_id", "prompt_id", "strategy", "scorer", "chosen_score", "rejected_score", "margin", "weight",
                "chosen_id", "rejected_id", "run_id", "split", "audit_verdict", "answer_verdict")


class _SplitWriter:
    """One split's output file, written a batch at a time."""

    def __init__(self, out_dir: Path, split: str, options: ExportOptions, scratch: Path):
        self.schema = style_schema(options.style)
        self.format, self.rows = options.format, 0
        if options.format == "parquet":
            self.path = out_dir / f"{split}.parquet"
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        elif options.format == "jsonl":
            self.path = out_dir / f"{split}.jsonl"
            self._file = open(self.path, "wb")
        else:  # an Arrow stream file that datasets memory-maps, then saves in its own layout
            self.path = scratch / f"{split}.arrow"
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_stream(self._sink, self.schema)

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self.format == "jsonl":
            if table.num_rows:
                pl.from_arrow(table).write_ndjson(self._file)
        else:
            self._writer.write_table(table)

    def close(self) -> None:
        if self.format == "jsonl":
            self._file.close()
        else:
            if self.format == "datasets" and self.rows == 0:  # datasets cannot read a stream of no batch
                self._writer.write_batch(pa.RecordBatch.from_pylist([], schema=self.schema))
            self._writer.close()
            if self.format == "datasets":
                self._sink.close()


def export_lake(lake, out_dir: Path | str, options: ExportOptions | None = None, card_context=None,
                batch_rows: int = 20_000) -> dict:
    """Filter, split and write the lake's pairs batch by batch; returns what `export_pairs` returns.
    `card_context` (a curate.publish.card.CardContext) writes the card; its scores and candidates may be
    None: they are then read from the lake for the exported pairs' candidates only. The export is
    written aside and swapped in whole (curate.publish.swap)."""
    out_dir = Path(out_dir)
    options = replace(options or ExportOptions(), name=(options and options.name) or out_dir.name)
    with staged(out_dir, _EXPORT_FILES, SPLITS) as scratch:
        written = _write_lake_export(lake, scratch, options, card_context, batch_rows)
    return {**relocated(written, scratch, out_dir), "out_dir": out_dir}


def _write_lake_export(lake, out_dir: Path, options: ExportOptions, card_context, batch_rows: int) -> dict:
    name = options.name
    splits = ["train", "test"] if options.test_fraction > 0 else ["train"]
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    writers = {split: _SplitWriter(out_dir, split, options, scratch) for split in splits}
    lineage = []  # per selected pair: what the card reads (CARD_COLUMNS, the texts' lengths)
    try:
        for batch in export_reads.pairs_with_verdicts(lake, options.strategies, options.min_margin, options.runs,
                                                      batch_rows):
            selected = select_pairs(pl.from_arrow(pa.Table.from_batches([batch])), options)
            lineage.append(selected.select(*CARD_COLUMNS, pl.col("chosen").str.len_chars().alias("chosen_chars"),
                                           pl.col("rejected").str.len_chars().alias("rejected_chars")))
            selected, _ = leave_out(selected, options)
            for split in splits:
                part = selected.filter(pl.col("split") == split)
                if part.height:
                    writers[split].write(to_style(part, options.style))
        for writer in writers.values():
            writer.close()
        files = _finish_files(writers, out_dir, options, splits)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    every = pl.concat(lineage) if lineage else None
    if every is None:
        every = select_pairs(lake.no_rows("pairs").with_columns(
            pl.lit(None, pl.String).alias("audit_verdict"), pl.lit(None, pl.String).alias("answer_verdict")),
            options).select(
            *CARD_COLUMNS, pl.lit(None, pl.UInt32).alias("chosen_chars"), pl.lit(None, pl.UInt32).alias("rejected_chars"))
    audit = audit_summary(every, None)
    kept, left_out = leave_out(every, options)

    dataset_info = _write_dataset_info(out_dir, name, files) if options.style == "llamafactory" else None
    card = None
    if card_context is not None:
        context = _card_context(lake, card_context, kept)
        data_files = {split: _hub_data_path(out_dir, split, options.format) for split in splits}
        card = write_dataset_card(kept, context.scores, context.runs, out_dir, context=context, options=options,
                                  data_files=data_files, name=name, audit=audit, **left_out)
    strategies = {split: dict(sorted(kept.filter(pl.col("split") == split).group_by("strategy").len().iter_rows()))
                  for split in splits}
    return {"out_dir": out_dir, "format": options.format, "style": options.style, "files": files,
            "counts": {split: writers[split].rows for split in splits}, "strategies": strategies,
            "total": kept.height, "card": card, "dataset_info": dataset_info, **left_out}


def _finish_files(writers: dict, out_dir: Path, options: ExportOptions, splits: list[str]) -> dict[str, Path]:
    if options.format != "datasets":
        return {split: writers[split].path for split in splits}
    import datasets

    dataset_dict = datasets.DatasetDict({split: datasets.Dataset.from_file(str(writers[split].path))
                                         for split in splits})
    one_shard = options.style == "llamafactory"
    num_shards = {split: 1 if one_shard or writers[split].rows == 0 else None for split in splits}
    dataset_dict.save_to_disk(str(out_dir), num_shards=None if all(v is None for v in num_shards.values())
                              else num_shards)
    files = {}
    for split in splits:
        shards = sorted((out_dir / split).glob("*.arrow"))
        files[split] = shards[0] if len(shards) == 1 else out_dir / split
    return files


def _write_dataset_info(out_dir: Path, name: str, files: dict[str, Path]) -> Path:
    path = out_dir / "dataset_info.json"
    entries = {f"{name}_{split}": {"file_name": file.relative_to(out_dir).as_posix(), "formatting": "sharegpt",
                                   "ranking": True,
                                   "columns": {"messages": "conversations", "chosen": "chosen",
                                               "rejected": "rejected", "system": "system"}}
               for split, file in files.items()}
    path.write_text(json.dumps(entries, indent=2) + "\n")
    return path


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
