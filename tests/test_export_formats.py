"""export_pairs: styles, formats, the hash split, filters and snapshots."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import datasets
import polars as pl
import pyarrow.parquet as pq
import pytest

from curate.lake import schemas
from curate.lake.catalog import Lake
from curate.publish.export import (
    LINEAGE_COLUMNS,
    ExportOptions,
    export_pairs,
    render_prompt_text,
    runs_between,
    select_pairs,
    split_bucket,
    split_of,
    style_schema,
    to_style,
)

NOW = datetime(2024, 10, 11, tzinfo=timezone.utc)
SYSTEM_PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
USER_PROMPT = [{"role": "user", "content": "Capital of France?"}]
MULTI_TURN = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"},
              {"role": "user", "content": "Name a prime."}]


def _pair(pair_id, chosen="good", rejected="bad", prompt=USER_PROMPT, strategy="margin", margin=1.0,
          run_id="run-a", chosen_id=None, scorer="math_verify"):
    chosen_score = None if margin is None else 1.0
    return {"pair_id": pair_id, "prompt_id": f"prompt-{pair_id}", "strategy": strategy,
            "params_json": "{}", "prompt": prompt, "chosen": chosen, "rejected": rejected,
            "chosen_id": chosen_id or f"c-{pair_id}", "rejected_id": f"r-{pair_id}", "scorer": scorer,
            "chosen_score": chosen_score, "rejected_score": None if margin is None else 1.0 - margin,
            "margin": margin, "reason": "test", "dedup_key": f"key-{pair_id}", "run_id": run_id,
            "created_at": NOW}


def frame(rows) -> pl.DataFrame:
    return pl.from_arrow(schemas.conform("pairs", rows))


@pytest.fixture
def pairs():
    return frame([
        _pair("p1", "The answer is 4.", "The answer is 5.", prompt=SYSTEM_PROMPT),
        _pair("p2", "Paris.", "Rome.", prompt=USER_PROMPT, margin=0.5, run_id="run-b"),
        _pair("p3", "7", "8", prompt=MULTI_TURN, strategy="reversal", margin=0.25, scorer="constraints"),
        _pair("p4", "ref", "wrong", strategy="gt", margin=None, chosen_id="reference", scorer=None,
              run_id="run-c"),
    ])


# ----------------------------------------------------------------------------------------------
# styles: exact keys and values

EXPECTED_KEYS = {
    "trl_conversational": ["prompt", "chosen", "rejected", *LINEAGE_COLUMNS],
    "trl_standard": ["prompt", "chosen", "rejected", *LINEAGE_COLUMNS],
    "openrlhf": ["chosen", "rejected", *LINEAGE_COLUMNS],
    "llamafactory": ["conversations", "chosen", "rejected", "system", *LINEAGE_COLUMNS],
}


@pytest.mark.parametrize("style", list(EXPECTED_KEYS))
def test_style_keys_exact(pairs, style):
    rows = to_style(pairs.sort("pair_id"), style).to_pylist()
    assert len(rows) == 4
    for row in rows:
        assert list(row) == EXPECTED_KEYS[style]
    assert style_schema(style).names == EXPECTED_KEYS[style]


@pytest.mark.parametrize("style", list(EXPECTED_KEYS))
@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "datasets"])
def test_style_keys_survive_every_format(tmp_path, pairs, style, fmt):
    out = tmp_path / "out"
    result = export_pairs(pairs, out, ExportOptions(format=fmt, style=style))
    if fmt == "jsonl":
        rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    elif fmt == "parquet":
        rows = pq.read_table(out / "train.parquet").to_pylist()
    else:
        loaded = datasets.load_from_disk(str(out))
        assert isinstance(loaded, datasets.DatasetDict) and list(loaded) == ["train"]
        rows = loaded["train"].to_list()
    assert [list(r) for r in rows] == [EXPECTED_KEYS[style]] * 4
    assert [r["pair_id"] for r in rows] == ["p1", "p2", "p3", "p4"]
    assert result["counts"] == {"train": 4} and result["total"] == 4


def _by_id(table):
    return {r["pair_id"]: r for r in table.to_pylist()}


def test_trl_conversational_rows(pairs):
    rows = _by_id(to_style(pairs, "trl_conversational"))
    assert rows["p1"]["prompt"] == SYSTEM_PROMPT
    assert rows["p1"]["chosen"] == [{"role": "assistant", "content": "The answer is 4."}]
    assert rows["p1"]["rejected"] == [{"role": "assistant", "content": "The answer is 5."}]
    assert rows["p3"]["prompt"] == MULTI_TURN


def test_trl_standard_rows(pairs):
    rows = _by_id(to_style(pairs, "trl_standard"))
    # a single user message is its text; anything else is "role: content" blocks
    # ending with a blank line, so that the prompt's last word and the answer's first stay apart
    assert rows["p2"]["prompt"] == "Capital of France?\n\n"
    assert rows["p1"]["prompt"] == "system: Be brief.\n\nuser: What is 2+2?\n\n"
    assert rows["p3"]["prompt"] == "user: Hi.\n\nassistant: Hello!\n\nuser: Name a prime.\n\n"
    assert rows["p1"]["chosen"] == "The answer is 4." and rows["p1"]["rejected"] == "The answer is 5."
    assert render_prompt_text(USER_PROMPT) == "Capital of France?"


def test_openrlhf_rows_hold_whole_conversations(pairs):
    rows = _by_id(to_style(pairs, "openrlhf"))
    assert rows["p1"]["chosen"] == [*SYSTEM_PROMPT, {"role": "assistant", "content": "The answer is 4."}]
    assert rows["p1"]["rejected"] == [*SYSTEM_PROMPT, {"role": "assistant", "content": "The answer is 5."}]
    # OpenRLHF (no --prompt_key) takes the prompt as the chosen conversation minus its last message
    assert rows["p3"]["chosen"][:-1] == MULTI_TURN
    assert "prompt" not in rows["p1"]
    # its margin loss reads a number: a pair without a margin (null in the lake) carries 0.0
    assert rows["p4"]["margin"] == 0.0 and rows["p1"]["margin"] == 1.0


def test_llamafactory_rows_are_sharegpt(pairs):
    rows = _by_id(to_style(pairs, "llamafactory"))
    assert rows["p1"]["conversations"] == [{"from": "human", "value": "What is 2+2?"}]
    assert rows["p1"]["system"] == "Be brief."
    assert rows["p1"]["chosen"] == {"from": "gpt", "value": "The answer is 4."}
    assert rows["p1"]["rejected"] == {"from": "gpt", "value": "The answer is 5."}
    assert rows["p2"]["system"] == ""
    assert rows["p3"]["conversations"] == [{"from": "human", "value": "Hi."}, {"from": "gpt", "value": "Hello!"},
                                           {"from": "human", "value": "Name a prime."}]


def test_llamafactory_refuses_unknown_roles():
    odd = frame([_pair("x", prompt=[{"role": "narrator", "content": "Once"}, {"role": "user", "content": "Go"}])])
    with pytest.raises(ValueError, match="narrator"):
        to_style(odd, "llamafactory")


@pytest.mark.parametrize("fmt,expected", [("jsonl", "{split}.jsonl"), ("parquet", "{split}.parquet"),
                                          ("datasets", "{split}/data-00000-of-00001.arrow")])
def test_llamafactory_dataset_info(tmp_path, pairs, fmt, expected):
    out = tmp_path / "lf"
    result = export_pairs(pairs, out, ExportOptions(format=fmt, style="llamafactory", test_fraction=0.5, name="dpo"))
    info = json.loads((out / "dataset_info.json").read_text())
    assert result["dataset_info"] == out / "dataset_info.json"
    assert set(info) == {"dpo_train", "dpo_test"}
    for split in ("train", "test"):
        entry = info[f"dpo_{split}"]
        assert entry == {"file_name": expected.format(split=split), "formatting": "sharegpt", "ranking": True,
                         "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected",
                                     "system": "system"}}
        assert (out / entry["file_name"]).is_file()
    if fmt == "datasets":  # the extra dataset_info.json does not confuse load_from_disk
        loaded = datasets.load_from_disk(str(out))
        assert sum(len(loaded[s]) for s in loaded) == 4


def test_other_styles_write_no_dataset_info(tmp_path, pairs):
    result = export_pairs(pairs, tmp_path / "o", ExportOptions(format="jsonl", style="openrlhf"))
    assert result["dataset_info"] is None and not (tmp_path / "o" / "dataset_info.json").exists()


# ----------------------------------------------------------------------------------------------
# formats and splits


def test_datasets_format_has_train_and_test(tmp_path, pairs):
    out = tmp_path / "dd"
    result = export_pairs(pairs, out, ExportOptions(test_fraction=0.5))
    loaded = datasets.load_from_disk(str(out))
    assert list(loaded) == ["train", "test"]
    assert {s: len(loaded[s]) for s in loaded} == result["counts"]
    assert sum(result["counts"].values()) == 4
    for split in ("train", "test"):
        assert all(split_of(pid, 0.5) == split for pid in loaded[split]["pair_id"])


def test_empty_test_split_is_still_written_and_loads(tmp_path):
    one = frame([_pair("only")])
    fraction = 0.05 if split_bucket("only") >= 0.05 else 0.001
    out = tmp_path / "e"
    result = export_pairs(one, out, ExportOptions(test_fraction=fraction))
    loaded = datasets.load_from_disk(str(out))
    assert result["counts"] == {"train": 1, "test": 0}
    assert len(loaded["test"]) == 0 and loaded["test"].column_names == EXPECTED_KEYS["trl_conversational"]


@pytest.mark.parametrize("fmt", ["datasets", "jsonl", "parquet"])
@pytest.mark.parametrize("style", list(EXPECTED_KEYS))
def test_no_pairs_exports_empty_splits(tmp_path, fmt, style):
    empty = pl.from_arrow(schemas.table("pairs").arrow_schema().empty_table())
    result = export_pairs(empty, tmp_path / "z", ExportOptions(format=fmt, style=style, test_fraction=0.1))
    assert result["counts"] == {"train": 0, "test": 0}
    if fmt == "datasets":
        loaded = datasets.load_from_disk(str(tmp_path / "z"))
        assert len(loaded["train"]) == 0 and loaded["train"].column_names == EXPECTED_KEYS[style]
    elif fmt == "parquet":
        assert pq.read_table(tmp_path / "z" / "train.parquet").column_names == EXPECTED_KEYS[style]
    else:
        assert (tmp_path / "z" / "train.jsonl").read_text() == ""


def test_split_is_stable_and_about_the_fraction():
    ids = [f"pair-{i:04d}" for i in range(1000)]
    first = [split_of(pid, 0.2) for pid in ids]
    assert first == [split_of(pid, 0.2) for pid in ids]  # same id, same split, no seed
    assert 160 <= first.count("test") <= 240
    # raising the fraction only moves pairs from train to test
    small = {pid for pid in ids if split_of(pid, 0.1) == "test"}
    large = {pid for pid in ids if split_of(pid, 0.2) == "test"}
    assert small < large
    assert all(split_of(pid, 0.0) == "train" for pid in ids)


def test_a_pair_keeps_its_split_across_exports_and_filters():
    rows = [_pair(f"id-{i:04d}", strategy="margin" if i % 2 else "gt", margin=i / 1000) for i in range(1000)]
    everything = select_pairs(frame(rows), ExportOptions(test_fraction=0.3))
    share = everything.filter(pl.col("split") == "test").height / everything.height
    assert 0.25 <= share <= 0.35
    subset = select_pairs(frame(rows[::-1]), ExportOptions(test_fraction=0.3, strategies=["margin"], min_margin=0.5))
    splits = dict(everything.select("pair_id", "split").iter_rows())
    assert subset.height > 0
    assert all(splits[pid] == split for pid, split in subset.select("pair_id", "split").iter_rows())


# ----------------------------------------------------------------------------------------------
# filters


def test_filter_by_strategy(pairs):
    assert select_pairs(pairs, ExportOptions(strategies=["margin"]))["pair_id"].to_list() == ["p1", "p2"]
    assert select_pairs(pairs, ExportOptions(strategies=["gt", "reversal"]))["pair_id"].to_list() == ["p3", "p4"]
    assert select_pairs(pairs, ExportOptions(strategies=[])).height == 0


def test_filter_by_min_margin_drops_pairs_without_margin(pairs):
    assert select_pairs(pairs, ExportOptions(min_margin=0.5))["pair_id"].to_list() == ["p1", "p2"]
    assert select_pairs(pairs, ExportOptions(min_margin=0.0))["pair_id"].to_list() == ["p1", "p2", "p3"]
    assert select_pairs(pairs)["pair_id"].to_list() == ["p1", "p2", "p3", "p4"]


def test_filter_by_runs(pairs):
    assert select_pairs(pairs, ExportOptions(runs=["run-b", "run-c"]))["pair_id"].to_list() == ["p2", "p4"]


def test_filters_combine_and_reach_the_files(tmp_path, pairs):
    options = ExportOptions(format="jsonl", strategies=["margin", "reversal"], min_margin=0.3, runs=["run-a"])
    result = export_pairs(pairs, tmp_path / "f", options)
    rows = [json.loads(line) for line in (tmp_path / "f" / "train.jsonl").read_text().splitlines()]
    assert [r["pair_id"] for r in rows] == ["p1"]
    assert result["strategies"] == {"train": {"margin": 1}}


def test_runs_between_orders_by_start():
    runs = pl.from_arrow(schemas.conform("runs", [
        {"run_id": rid, "started_at": datetime(2024, 1, day, tzinfo=timezone.utc), "status": "completed",
         "config_json": "{}", "code_version": "v"} for rid, day in (("c", 3), ("a", 1), ("b", 2), ("d", 4))
    ]))
    assert runs_between(runs, "b", "c") == ["b", "c"]
    assert runs_between(runs, "b") == ["b", "c", "d"]
    assert runs_between(runs, last="b") == ["a", "b"]
    with pytest.raises(ValueError, match="no run"):
        runs_between(runs, "zzz")


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="format"):
        ExportOptions(format="csv")
    with pytest.raises(ValueError, match="style"):
        ExportOptions(style="alpaca")
    with pytest.raises(ValueError, match="test_fraction"):
        ExportOptions(test_fraction=1.0)
    with pytest.raises(ValueError, match="list"):
        ExportOptions(strategies="margin")


# ----------------------------------------------------------------------------------------------
# rewriting an export directory, snapshots


def test_a_new_export_leaves_nothing_stale(tmp_path, pairs):
    out = tmp_path / "x"
    export_pairs(pairs, out, ExportOptions(format="jsonl", test_fraction=0.5))
    assert (out / "test.jsonl").exists()
    export_pairs(pairs, out, ExportOptions(format="parquet"))
    assert not (out / "test.jsonl").exists() and not (out / "train.jsonl").exists()
    assert (out / "train.parquet").exists()
    # over a single Dataset saved at the root (older versions exported that): load_from_disk must
    # now see the DatasetDict
    old = tmp_path / "old"
    datasets.Dataset.from_dict({"pair_id": ["p1"]}).save_to_disk(str(old))
    export_pairs(pairs.filter(pl.col("pair_id") == "p2"), old, ExportOptions())
    loaded = datasets.load_from_disk(str(old))
    assert isinstance(loaded, datasets.DatasetDict) and loaded["train"]["pair_id"] == ["p2"]


def test_as_of_snapshot_recipe(tmp_path, pairs):
    """`--as-of N`: the caller reads pairs at a lake snapshot and passes them in."""
    with Lake(tmp_path / "lake") as lake:
        lake.commit({"pairs": pairs.filter(pl.col("pair_id").is_in(["p1", "p2"])).to_arrow()})
        snapshot = lake.snapshot_id()
        lake.commit({"pairs": pairs.filter(pl.col("pair_id").is_in(["p3", "p4"])).to_arrow()})
        then = lake.query("SELECT * FROM pairs AT (VERSION => ?)", [snapshot])
        now = lake.read("pairs")
    assert export_pairs(then, tmp_path / "then", ExportOptions(format="jsonl"))["total"] == 2
    assert export_pairs(now, tmp_path / "now", ExportOptions(format="jsonl"))["total"] == 4
