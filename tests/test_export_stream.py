"""The streamed export writes what the in-memory export writes, batch after batch."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import polars as pl
import pyarrow.parquet as pq
import pytest

from bench.synthetic_lake import fill
from curate.audit.checks import read_audits, with_verdicts
from curate.lake.catalog import Lake
from curate.publish.card import CardContext
from curate.publish.export import ExportOptions, export_pairs
from curate.publish.stream import export_lake

NOW = datetime(2026, 11, 2, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    with Lake(tmp_path_factory.mktemp("export") / "lake") as lake:
        fill(lake, 400, run_id="night-1")
        fill(lake, 100, run_id="night-2", offset=10_000)
        lake.con.execute("""UPDATE lake.pairs SET strategy = 'gt', margin = NULL,
                            prompt = list_append(prompt, {'role': 'assistant', 'content': 'Step 1: so far.'})
                            WHERE pair_id IN (SELECT pair_id FROM lake.pairs ORDER BY pair_id LIMIT 40)""")
        refuted = lake.query("SELECT pair_id FROM pairs ORDER BY pair_id DESC LIMIT 25")["pair_id"].to_list()
        lake.commit({"pair_audits": [{"audit_id": f"x{i}", "pair_id": p, "check_name": "verifier",
                                      "verdict": "refuted", "audit_version": "1", "run_id": "night-2",
                                      "created_at": NOW} for i, p in enumerate(refuted)]})
        yield lake


def _in_memory(lake, out, options):
    pairs = with_verdicts(lake.read("pairs"), read_audits(lake))
    context = CardContext(scores=lake.read("scores"), runs=lake.read("runs"),
                          candidates=lake.query("SELECT candidate_id, model FROM candidates"), as_of=7, source="lake")
    return export_pairs(pairs, out, options, card_context=context)


def _card(out):
    """The card's text without the minute it was written in."""
    return re.sub(r" on \d{4}-\d\d-\d\d \d\d:\d\d UTC", " on <when>", (out / "README.md").read_text())


CASES = [
    ExportOptions(format="parquet", test_fraction=0.2),
    ExportOptions(format="jsonl", style="trl_standard", strategies=["margin"]),
    ExportOptions(format="datasets", style="openrlhf", runs=["night-2"], keep_refuted=True),
    ExportOptions(format="parquet", style="llamafactory", min_margin=0.5, test_fraction=0.5),
]


@pytest.mark.parametrize("options", CASES, ids=lambda o: f"{o.format}-{o.style}")
def test_streamed_export_equals_in_memory_export(lake, tmp_path, options):
    a, b = tmp_path / "a" / "out", tmp_path / "b" / "out"  # the card names the folder
    want = _in_memory(lake, a, options)
    got = export_lake(lake, b, options, card_context=CardContext(as_of=7, source="lake"),
                      batch_rows=64)
    for key in ("counts", "strategies", "total", "refuted_left_out"):
        assert got[key] == want[key], key
    assert want["total"] > 0
    assert _card(b) == _card(a)
    for split, path in want["files"].items():
        other = got["files"][split]
        if options.format == "parquet":
            assert pq.read_table(other).equals(pq.read_table(path))
        elif options.format == "jsonl":
            assert other.read_bytes() == path.read_bytes()
        else:
            import datasets

            one, two = datasets.load_from_disk(str(a)), datasets.load_from_disk(str(b))
            assert one[split].to_list() == two[split].to_list() and one[split].features == two[split].features
    if options.style == "llamafactory":
        assert (b / "dataset_info.json").read_text() == (a / "dataset_info.json").read_text()
    assert not list(b.glob(".export-*"))  # the scratch folder is gone


def test_export_of_one_run_reads_only_its_pairs(lake, tmp_path):
    got = export_lake(lake, tmp_path / "night2", ExportOptions(format="jsonl", runs=["night-2"]))
    rows = pl.read_ndjson(tmp_path / "night2" / "train.jsonl")
    assert set(rows["run_id"]) == {"night-2"} and got["total"] == rows.height == 100 - got["refuted_left_out"]


@pytest.mark.parametrize("format", ["datasets", "parquet", "jsonl"])
def test_a_lake_without_pairs_exports_an_empty_dataset(tmp_path, format):
    import datasets

    with Lake(tmp_path / "lake") as empty:
        result = export_lake(empty, tmp_path / "out", ExportOptions(format=format))
    assert result["total"] == 0 and result["counts"] == {"train": 0}
    if format == "datasets":
        assert len(datasets.load_from_disk(str(tmp_path / "out"))["train"]) == 0
    elif format == "parquet":
        assert pq.read_table(result["files"]["train"]).num_rows == 0
    else:
        assert result["files"]["train"].read_text() == ""
