"""Export: kept pairs as a Hugging Face dataset in TRL's conversational preference format (the
default of export_pairs)."""

from __future__ import annotations

from datetime import datetime, timezone

import datasets
import polars as pl
import pytest

from curate.lake import schemas
from curate.lake.catalog import Lake
from curate.publish.export import LINEAGE_COLUMNS, export_pairs, to_style

NOW = datetime(2024, 10, 11, tzinfo=timezone.utc)
PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]


def _pair(pair_id, chosen, rejected, prompt=PROMPT, margin=1.0):
    return {"pair_id": pair_id, "prompt_id": f"prompt-{pair_id}", "strategy": "margin",
            "params_json": '{"min_margin": 0.0, "scorer": "math_verify"}', "prompt": prompt,
            "chosen": chosen, "rejected": rejected, "chosen_id": f"c-{pair_id}", "rejected_id": f"r-{pair_id}",
            "scorer": "math_verify", "chosen_score": 1.0, "rejected_score": 1.0 - margin, "margin": margin,
            "reason": "best vs worst", "dedup_key": f"key-{pair_id}", "run_id": "run-e", "created_at": NOW}


@pytest.fixture
def pairs():
    return pl.from_arrow(schemas.conform("pairs", [
        _pair("b2", "The answer is 4.", "The answer is 5."),
        _pair("a1", "Paris.", "Rome.", prompt=[{"role": "user", "content": "Capital of France?"}], margin=0.5),
    ]))


def test_export_writes_loadable_dataset(tmp_path, pairs):
    out = tmp_path / "exports" / "dpo"
    written = export_pairs(pairs, out)
    loaded = datasets.load_from_disk(str(out))["train"]
    assert isinstance(loaded, datasets.Dataset)
    assert loaded.num_rows == 2 == written["total"]
    assert loaded.column_names == ["prompt", "chosen", "rejected", *LINEAGE_COLUMNS]


def test_export_conversational_format(tmp_path, pairs):
    out = tmp_path / "dpo"
    export_pairs(pairs, out)
    rows = datasets.load_from_disk(str(out))["train"].to_list()
    # sorted by pair id
    assert [r["pair_id"] for r in rows] == ["a1", "b2"]
    second = rows[1]
    assert second["prompt"] == PROMPT
    assert second["chosen"] == [{"role": "assistant", "content": "The answer is 4."}]
    assert second["rejected"] == [{"role": "assistant", "content": "The answer is 5."}]
    first = rows[0]
    assert first["prompt"] == [{"role": "user", "content": "Capital of France?"}]
    assert first["chosen"] == [{"role": "assistant", "content": "Paris."}]
    assert first["rejected"] == [{"role": "assistant", "content": "Rome."}]


def test_export_lineage_columns(tmp_path, pairs):
    out = tmp_path / "dpo"
    export_pairs(pairs, out)
    rows = {r["pair_id"]: r for r in datasets.load_from_disk(str(out))["train"].to_list()}
    row = rows["a1"]
    assert row["prompt_id"] == "prompt-a1"
    assert row["strategy"] == "margin"
    assert row["scorer"] == "math_verify"
    assert row["chosen_id"] == "c-a1" and row["rejected_id"] == "r-a1"
    assert row["margin"] == 0.5 and row["chosen_score"] == 1.0 and row["rejected_score"] == 0.5
    assert row["run_id"] == "run-e"
    assert row["params_json"].startswith("{")
    # internal columns are not exported
    assert "dedup_key" not in row and "created_at" not in row


def test_features_are_lists_of_role_content_structs(tmp_path, pairs):
    out = tmp_path / "dpo"
    export_pairs(pairs, out)
    features = datasets.load_from_disk(str(out))["train"].features
    for column in ("prompt", "chosen", "rejected"):
        inner = features[column].feature
        assert set(inner) == {"role", "content"}, column


def test_trl_conversational_in_memory(pairs):
    table = to_style(pairs.sort("pair_id"), "trl_conversational")
    assert table.column_names == ["prompt", "chosen", "rejected", *LINEAGE_COLUMNS]
    assert table.column("chosen").to_pylist()[0] == [{"role": "assistant", "content": "Paris."}]
    assert all(len(c) == 1 for c in table.column("rejected").to_pylist())


def test_export_from_lake_round_trip(tmp_path, pairs):
    with Lake(tmp_path / "lake") as lake:
        lake.commit({"pairs": pairs.to_arrow()})
        stored = lake.read("pairs")
    export_lake_pairs = export_pairs(stored, tmp_path / "out")
    assert export_lake_pairs["total"] == 2
    rows = datasets.load_from_disk(str(tmp_path / "out"))["train"].to_list()
    assert [r["pair_id"] for r in rows] == ["a1", "b2"]
    assert rows[1]["prompt"] == PROMPT
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "The answer is 4."}]


def test_export_overwrites_previous_export(tmp_path, pairs):
    out = tmp_path / "dpo"
    export_pairs(pairs, out)
    export_pairs(pairs.filter(pl.col("pair_id") == "a1"), out)
    loaded = datasets.load_from_disk(str(out))["train"]
    assert list(loaded["pair_id"]) == ["a1"]


def test_export_of_no_pairs_is_an_empty_dataset(tmp_path):
    empty = pl.from_arrow(schemas.table("pairs").arrow_schema().empty_table())
    export_pairs(empty, tmp_path / "empty")
    loaded = datasets.load_from_disk(str(tmp_path / "empty"))["train"]
    assert len(loaded) == 0 and {"prompt", "chosen", "rejected"} <= set(loaded.column_names)
